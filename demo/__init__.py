"""Guidance Lab engine: networks, guidance, sampling, checkpoints, training, evaluation, rendering (no UI)."""
from .config import Interval, SamplerConfig
from .guidance import GUIDANCE, METHODS, Guidance, make_guidance
from .pipeline import Models, Request, RequestError, generate, generate_final, generate_together
from .sampling import Step

__all__ = ["GUIDANCE", "METHODS", "Guidance", "Interval", "Models", "Request", "RequestError", "SamplerConfig",
           "Step", "generate", "generate_final", "generate_together", "make_guidance"]

"""Guidance Lab engine: networks, guidance, sampling, checkpoints, training, evaluation, rendering (no UI)."""
from .config import METHODS, PRESETS, Interval, SamplerConfig
from .guidance import GUIDANCE, make_guidance
from .pipeline import Models, Request, RequestError, generate, generate_final, generate_together
from .sampling import Step

__all__ = ["GUIDANCE", "METHODS", "PRESETS", "Interval", "Models", "Request", "RequestError", "SamplerConfig",
           "Step", "generate", "generate_final", "generate_together", "make_guidance"]

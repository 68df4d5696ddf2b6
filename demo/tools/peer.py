"""The bench's peer baseline: the same denoiser driven by diffusers' DDIMScheduler loop (same steps, batch and
guidance), against our sampler on the same request. Skipped, saying so, where diffusers is not installed."""
from __future__ import annotations

import math
import statistics
from dataclasses import replace

import torch

from demo.engine.config import IMAGE_SHAPE, NULL_LABEL, Interval
from demo.engine.pipeline import Models, Request, generate_final
from demo.tools.benchmarks import interleaved, ratio


def diffusers_loop(models: Models, request: Request):
    """The standard diffusers pipeline loop (DDIMScheduler, eps prediction, CFG by a doubled batch) around
    the same denoiser. Our D(x; sigma) is wrapped as eps(x_vp, t): sigma_t^2 = (1 - abar_t) / abar_t,
    x = x_vp / sqrt(abar_t), eps = (x - D) / sigma_t. Returns a function that samples once."""
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    label = torch.full((request.num_samples,), request.label, device=models.device)
    label2 = torch.cat([label, torch.full_like(label, NULL_LABEL)])
    scale = 1 + request.weight                          # diffusers' guidance_scale = 1 + w (our convention)
    cfg = request.method == "cfg"

    @torch.no_grad()
    def run():
        scheduler.set_timesteps(request.sampler.num_steps)
        generator = torch.Generator().manual_seed(request.seed)
        x = torch.randn(request.num_samples, *IMAGE_SHAPE, generator=generator).to(models.device)
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            abar = scheduler.alphas_cumprod[t].item()
            sigma = math.sqrt((1 - abar) / abar)
            x_ve = scheduler.scale_model_input(x, t) / math.sqrt(abar)
            if cfg:
                cond, uncond = models.net(torch.cat([x_ve, x_ve]), sigma, label2).chunk(2)
                denoised = uncond + scale * (cond - uncond)
            else:
                denoised = models.net(x_ve, sigma, label)
            x = scheduler.step((x_ve - denoised) / sigma, t, x).prev_sample
        return x
    return run


def peer_rows(models: Models, requests: list[Request], repeats: int) -> list[dict] | str:
    """Unguided and CFG of a comparison, both loops at DDIM over every noise level (the peer has no interval)."""
    try:
        import diffusers
    except ImportError:
        return "diffusers is not installed (pip install diffusers) - peer baseline skipped"
    rows = []
    for request in [r for r in requests if r.method in ("unguided", "cfg")]:
        request = replace(request, sampler=replace(request.sampler, sampler="ddim"), interval=Interval())
        times = interleaved({"ours": lambda: generate_final(models, request),
                             "diffusers": diffusers_loop(models, request)}, repeats * 2)
        rows.append({"method": request.method, "ours_seconds": statistics.median(times["ours"]),
                     "diffusers_seconds": statistics.median(times["diffusers"]),
                     "ratio": ratio(times, "ours", "diffusers"), "diffusers": diffusers.__version__})
    return rows

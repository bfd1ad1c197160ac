"""Device and precision choice: bf16 autocast where supported, fp16 with scaling on CUDA
without bf16, and never fp16 autocast on the CPU (a known crash of the reference code).

``fp16-weights`` is the official code's precision: CLIP's weights cast to half (OpenAI's
``clip.build_model`` -> ``convert_weights``) and no autocast at all, so activations are fp16
from block to block; the backbone casts itself (``Backbone.half_weights``) and each method
its learnable parts (``PromptMethod.fp16_parts``). It runs on the CPU as well (torch's CPU
kernels take fp16 matmuls), which is what lets the tests check it."""
from __future__ import annotations

from typing import ContextManager

import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use --device cpu")
    return device


#: every value ``precision`` takes (the config schema's ``Literal`` lists the same)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "fp16-weights")
#: the official code's pure-fp16 precision: half weights, no autocast, no loss scaling
HALF_WEIGHTS = "fp16-weights"


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == HALF_WEIGHTS:
        return precision
    if device.type != "cuda":
        if precision == "fp16":
            raise ConfigError("fp16 is not supported on the CPU; use fp32, bf16 or fp16-weights")
        return "fp32" if precision == "auto" else precision
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast region of ``precision``; fp32 switches off any autocast a caller opened,
    so a computation asked for in fp32 is fp32 wherever it runs. ``fp16-weights`` switches it
    off too: its tensors are already half, as in the official code, which uses no autocast."""
    if precision in ("fp32", HALF_WEIGHTS):
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str):
    """A GradScaler only for fp16 on CUDA (bf16 has fp32's range).

    It starts at 2**10, not torch's 2**16: at 2**16 the first steps of a prompt-tuning run
    overflow and are skipped while the scale backs off (measured by benchmarks/gpu_checks.py
    on an H200: 1-2 of 10 steps skipped, final loss 9-13% off the fp32 run; from 2**10 none
    skipped and the loss within 1e-4 of fp32). It still grows when gradients allow.
    """
    if device.type == "cuda" and precision == "fp16":
        return torch.amp.GradScaler("cuda", init_scale=2.0**10)
    return None

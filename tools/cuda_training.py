"""GPU-side training helpers: bf16 autocast and per-block gradient checkpointing.

bf16 has float32's exponent range, so no GradScaler is needed (unlike fp16). Under autocast the
linear layers run in bf16 and the WKV kernel receives bf16 r/w/k/v/a/b with its state in fp32;
compute the loss from `logits.float()`. Keep the master weights and the optimiser in fp32.

Gradient checkpointing trades compute for memory: each wrapped block keeps only its inputs and
recomputes its forward (WKV kernel included) during backward; at long contexts this cuts
activation memory by roughly the number of tensors a block saves (tens per layer).
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils.checkpoint import checkpoint


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def mixed_precision(device: torch.device):
    """bf16 autocast on a CUDA device that supports it; a no-op context elsewhere."""
    if bf16_supported(torch.device(device)):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def checkpointed(fn, *args, enabled: bool = True, **kwargs):
    """fn(*args, **kwargs), recomputed in backward instead of storing its activations when
    `enabled` and autograd is recording. Non-reentrant: works with kwargs, with inputs that do
    not require grad, and under autocast (the recomputation reuses the autocast state)."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return fn(*args, **kwargs)

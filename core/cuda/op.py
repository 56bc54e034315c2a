"""WKV-7 on the GPU as a differentiable torch operation (the kernels are in wkv7.cu)."""
from __future__ import annotations

import warnings

import torch

from core.cuda.build import load_extension

HEAD_SIZE = 64
KERNEL_DTYPES = (torch.bfloat16, torch.float32)
_warned_unsupported: set[str] = set()


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


class WKV7Function(torch.autograd.Function):
    """(r, w, k, v, a, b, state, for_backward) -> (y, final state); gradients for the seven tensors.

    r..b: contiguous [B,T,H,64] of one dtype (bfloat16 or float32), w the log decay;
    state: contiguous float32 [B,H,64,64], S[value, key]. for_backward=False (inference) skips
    saving what backward needs.
    """

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, state, for_backward=True):
        ext = load_extension(r.device)
        if ext is None:
            raise RuntimeError("the WKV-7 CUDA extension is not available")
        with torch.cuda.device(r.device):
            y, state_out, sa, snapshots = ext.forward(r, w, k, v, a, b, state, for_backward,
                                                        _stream(r.device))
        ctx.ext = ext
        ctx.save_for_backward(r, w, k, v, a, b, sa, snapshots, state_out)
        return y, state_out

    @staticmethod
    def backward(ctx, dy, dstate_out):
        r, w, k, v, a, b, sa, snapshots, state_out = ctx.saved_tensors
        if sa.shape[0] != r.shape[0]:
            raise RuntimeError("WKV-7 forward ran without saving for backward")
        # Gradients of unused outputs arrive as zeros (materialised by autograd).
        dy = dy.to(r.dtype).contiguous()
        dstate_out = dstate_out.float().contiguous()
        with torch.cuda.device(r.device):
            dr, dw, dk, dv, da, db, dstate = ctx.ext.backward(
                r, w, k, v, a, b, sa, snapshots, state_out, dy, dstate_out, _stream(r.device))
        return dr, dw, dk, dv, da, db, (dstate if ctx.needs_input_grad[6] else None), None


def _unsupported(reason: str) -> None:
    if reason not in _warned_unsupported:
        _warned_unsupported.add(reason)
        warnings.warn(f"WKV-7 CUDA kernel skipped: {reason}; using the PyTorch path.",
                      RuntimeWarning, stacklevel=3)


def wkv7_cuda(r, w, k, v, a, b, state=None):
    """WKV-7 through the CUDA kernel: (y in r's dtype, final float32 state), or None when the
    kernel cannot take these tensors (float64, a head size other than 64, a failed build)."""
    if not r.is_cuda or r.dtype == torch.float64:
        return None  # float64 is a testing precision: the PyTorch paths handle it
    if r.dim() != 4 or r.shape[-1] != HEAD_SIZE:
        _unsupported(f"shape {tuple(r.shape)} (the kernel is built for [B,T,H,{HEAD_SIZE}])")
        return None
    if load_extension(r.device) is None:
        return None
    kernel_dtype = r.dtype if r.dtype in KERNEL_DTYPES else torch.float32
    inputs = [x.to(kernel_dtype).contiguous() for x in (r, w, k, v, a, b)]
    B, _, H, N = r.shape
    if state is None:
        state = torch.zeros(B, H, N, N, dtype=torch.float32, device=r.device)
    state = state.float().contiguous()
    for_backward = torch.is_grad_enabled() and any(x.requires_grad for x in (*inputs, state))
    y, state_out = WKV7Function.apply(*inputs, state, for_backward)
    return y.to(r.dtype), state_out

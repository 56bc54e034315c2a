"""WKV-7 on the GPU as a differentiable torch operation (the kernels are in wkv7.cu).

The kernel is trusted only after it has agreed with the PyTorch path on this machine: at its first
use on a device (per dtype, and again with the backward pass at its first use in training) it and
the chunked PyTorch WKV solve one small random problem, and the answers are compared (`KernelGate`).
If they disagree, or the kernel fails, the process warns once and keeps the PyTorch path, so an
unverified kernel never gives a user wrong results.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Callable

import torch

from core.network.cuda.build import load_extension
from core.network.wkv import wkv7_chunked  # the self-test reference: the chunked PyTorch path

HEAD_SIZE = 64
KERNEL_DTYPES = (torch.bfloat16, torch.float32)
# Largest relative RMS error against the float64 PyTorch path that the self-test accepts, for y,
# the final state and (training) every gradient. A correct kernel stays well inside (float32:
# ~1e-5 on this problem, bfloat16: its rounding, ~4e-3); a wrong one is off by O(1).
SELF_TEST_TOLERANCE = {torch.float32: 5e-3, torch.bfloat16: 2e-2}
SELF_TEST_SHAPE = (2, 40, 2, HEAD_SIZE)   # B, T, H, N: T crosses the kernel's 16-token snapshots
_warned_unsupported: set[str] = set()
log = logging.getLogger(__name__)


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


def self_test_problem(device, dtype, shape=SELF_TEST_SHAPE, seed=0):
    """A small WKV-7 problem distributed as RWKV-7 produces it (decay in (0.545, 1), a = -kk,
    b = kk * rate, a non-zero initial state), plus output gradients: (inputs in `dtype`, state,
    dy, dstate), all on `device`. Its own generator: the caller's random stream is untouched."""
    g = torch.Generator().manual_seed(seed)
    B, T, H, N = shape

    def randn(*size):
        return torch.randn(*size, generator=g, dtype=torch.float64)

    r, k, v = randn(B, T, H, N) * 0.5, randn(B, T, H, N) * 0.5, randn(B, T, H, N)
    w = -0.606531 * torch.sigmoid(2 * randn(B, T, H, N))
    kk = torch.nn.functional.normalize(randn(B, T, H, N), dim=-1)
    b = kk * torch.sigmoid(randn(B, T, H, N))
    state, dy, dstate = randn(B, H, N, N) * 0.3, randn(B, T, H, N), randn(B, H, N, N)
    inputs = [x.to(device, dtype) for x in (r, w, k, v, -kk, b)]
    return inputs, state.to(device, torch.float32), dy.to(device, dtype), dstate.to(device, torch.float32)


def _rel_rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().double(), ref.detach().double()
    return ((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def compare_backends(kernel: Callable, reference: Callable, device, dtype: torch.dtype,
                     backward: bool) -> str | None:
    """Run `kernel` and `reference` (both `fn(r, w, k, v, a, b, state) -> (y, final state)`) on
    self_test_problem; None when the kernel's y, final state and (with `backward`) gradients of
    every input are within SELF_TEST_TOLERANCE of the reference's, else what disagreed. The
    reference runs in float64 on the kernel's exact (rounded) inputs."""
    names = ("r", "w", "k", "v", "a", "b", "state")

    def run(fn, precision, state_precision):
        leaves = [x.detach().to(precision, copy=True).requires_grad_(backward) for x in inputs]
        s0 = state.detach().to(state_precision, copy=True).requires_grad_(backward)
        with torch.set_grad_enabled(backward):
            y, s_end = fn(*leaves, s0)
            results = {"y": y, "final state": s_end}
            if backward:
                loss = (y.double() * dy.double()).sum() + (s_end.double() * dstate.double()).sum()
                grads = torch.autograd.grad(loss, [*leaves, s0], allow_unused=True)
                for name, leaf, grad in zip(names, [*leaves, s0], grads):
                    results[f"gradient of {name}"] = torch.zeros_like(leaf) if grad is None else grad
        return {name: x.detach() for name, x in results.items()}

    tolerance = SELF_TEST_TOLERANCE.get(dtype, SELF_TEST_TOLERANCE[torch.float32])
    # whatever the caller's mode (inference, autocast), the test runs plain
    with torch.inference_mode(False), torch.autocast(torch.device(device).type, enabled=False):
        inputs, state, dy, dstate = self_test_problem(device, dtype)
        try:
            got = run(kernel, dtype, torch.float32)
        except Exception as error:  # a launch failure, an illegal address...
            return f"it raised {type(error).__name__}: {error}"
        want = run(reference, torch.float64, torch.float64)
    for name, ref in want.items():
        if got[name].shape != ref.shape:
            return f"{name} has shape {tuple(got[name].shape)}, not {tuple(ref.shape)}"
        error = _rel_rms(got[name], ref)
        if not error <= tolerance:   # NaN fails too
            return f"{name} is off by {error:.3g} (relative RMS; tolerance {tolerance:g})"
    return None


class KernelGate:
    """Whether to use a kernel: decided once per (device, dtype, forward or training) by
    compare_backends against the chunked PyTorch path; a failure is warned about once."""

    def __init__(self, kernel: Callable[[bool], Callable], reference: Callable) -> None:
        # kernel(for_backward) -> fn(r, w, k, v, a, b, state) -> (y, final state); reference: the same contract
        self._kernel, self._reference = kernel, reference
        self._lock = threading.Lock()
        self._verdicts: dict[tuple, bool] = {}
        self.reasons: dict[tuple, str] = {}
        self._warned = False

    def trusted(self, device, dtype: torch.dtype, backward: bool) -> bool:
        device = torch.device(device)
        key = (device.type, device.index, dtype, backward)
        with self._lock:
            if key not in self._verdicts:
                self._decide(key, device, dtype, backward)
            return self._verdicts[key]

    def _decide(self, key, device, dtype, backward) -> None:
        started = time.monotonic()
        why = compare_backends(self._kernel(backward), self._reference, device, dtype, backward)
        self._verdicts[key] = why is None
        forward_key = (*key[:3], False)
        if why is None and backward:
            self._verdicts[forward_key] = True       # checked on the way
        if why is not None and not backward:
            self._verdicts[(*key[:3], True)] = False  # no training on a wrong forward
        what = f"{dtype} {'forward and backward' if backward else 'forward'} on {device}"
        if why is None:
            log.info("WKV-7 CUDA kernel agrees with the PyTorch path (%s; %.2f s)", what,
                     time.monotonic() - started)
            return
        self.reasons[key] = why
        if not self._warned:
            self._warned = True
            warnings.warn(f"WKV-7 CUDA kernel failed its self-test ({what}: {why}); using the "
                          f"PyTorch WKV path instead, which gives correct results more slowly.",
                          RuntimeWarning, stacklevel=5)

    def forget(self) -> None:
        """Decide again at the next use (tests use it)."""
        with self._lock:
            self._verdicts.clear()
            self.reasons.clear()
            self._warned = False


def _kernel_for(for_backward: bool) -> Callable:
    def run(r, w, k, v, a, b, state):
        return WKV7Function.apply(r.contiguous(), w.contiguous(), k.contiguous(), v.contiguous(),
                                  a.contiguous(), b.contiguous(), state.contiguous(), for_backward)
    return run


_gate = KernelGate(_kernel_for, wkv7_chunked)


def wkv7_cuda(r, w, k, v, a, b, state=None):
    """WKV-7 through the CUDA kernel: (y in r's dtype, final float32 state), or None when the
    kernel cannot take these tensors (float64, a head size other than 64, a failed build) or did
    not pass its self-test on this device."""
    if not r.is_cuda or r.dtype == torch.float64:
        return None  # float64 is a testing precision: the PyTorch paths handle it
    if r.dim() != 4 or r.shape[-1] != HEAD_SIZE:
        _unsupported(f"shape {tuple(r.shape)} (the kernel is built for [B,T,H,{HEAD_SIZE}])")
        return None
    if load_extension(r.device) is None:
        return None
    kernel_dtype = r.dtype if r.dtype in KERNEL_DTYPES else torch.float32
    for_backward = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (r, w, k, v, a, b, state))
    if not _gate.trusted(r.device, kernel_dtype, for_backward):
        return None
    inputs = [x.to(kernel_dtype).contiguous() for x in (r, w, k, v, a, b)]
    B, _, H, N = r.shape
    if state is None:
        state = torch.zeros(B, H, N, N, dtype=torch.float32, device=r.device)
    state = state.float().contiguous()
    y, state_out = WKV7Function.apply(*inputs, state, for_backward)
    return y.to(r.dtype), state_out

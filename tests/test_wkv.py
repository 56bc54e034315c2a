"""The fast WKV-7 path against the sequential reference: values, final state and every gradient."""
from __future__ import annotations

import functools
import logging

import pytest
import torch

from core.network import wkv
from core.network.wkv import wkv7, wkv7_chunked, wkv7_reference
from tests.small_models import run_with_grads

NAMES = ("r", "w", "k", "v", "a", "b", "state")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run many small ops, which slow down badly when worker threads wait on each
    other on a busy machine; one thread keeps them fast everywhere."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rwkv_inputs(B, T, H, N, dtype=torch.float64, seed=0, w_range=(-0.6066, 0.0)):
    """Inputs the way RWKV-7 makes them: w the log-decay in the model's range, a = -kk, b = kk * rate."""
    g = torch.Generator().manual_seed(seed)
    rand = functools.partial(torch.randn, dtype=dtype, generator=g)
    kk = torch.nn.functional.normalize(rand(B, T, H, N), dim=-1)
    lo, hi = w_range
    w = lo + (hi - lo) * torch.rand(B, T, H, N, dtype=dtype, generator=g)
    r, k, v = rand(B, T, H, N), rand(B, T, H, N), rand(B, T, H, N)
    rate = torch.sigmoid(rand(B, T, H, N))
    state = 0.3 * rand(B, H, N, N)
    return [r, w, k, v, -kk, kk * rate, state]


def rel_err(x, ref):
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


# float64 against the float64 reference: measured 1e-15 at most; a float32 step anywhere on the way gives
# about 4e-7, which a float32-sized bound (1e-5) would let through
FLOAT64_TOL = 1e-12


@pytest.mark.parametrize("T", [1, 5, 16, 37, 70])
def test_chunked_matches_reference_float64(T):
    B, H, N = (2, 3, 8) if T != 37 else (1, 2, 64)
    tensors = rwkv_inputs(B, T, H, N, seed=T)
    y_ref, s_ref, g_ref = run_with_grads(wkv7_reference, tensors)
    y, s, g = run_with_grads(wkv7_chunked, tensors)
    assert y.shape == (B, T, H, N) and s.shape == (B, H, N, N)
    assert rel_err(y, y_ref) < FLOAT64_TOL
    assert rel_err(s, s_ref) < FLOAT64_TOL
    for name, grad, grad_ref in zip(NAMES, g, g_ref):
        assert grad is not None and grad.shape == grad_ref.shape, name
        assert rel_err(grad, grad_ref) < FLOAT64_TOL, name


@pytest.mark.parametrize("chunk", [4, 32])
def test_other_chunk_sizes_match_reference(chunk):
    tensors = rwkv_inputs(1, 45, 2, 8, seed=chunk)
    y_ref, s_ref, g_ref = run_with_grads(wkv7_reference, tensors)
    y, s, g = run_with_grads(functools.partial(wkv7_chunked, chunk=chunk), tensors)
    assert rel_err(y, y_ref) < FLOAT64_TOL and rel_err(s, s_ref) < FLOAT64_TOL
    for name, grad, grad_ref in zip(NAMES, g, g_ref):
        assert rel_err(grad, grad_ref) < FLOAT64_TOL, name


def test_no_initial_state_means_zero_state():
    r, w, k, v, a, b, state = rwkv_inputs(2, 21, 2, 8)
    y, s = wkv7_chunked(r, w, k, v, a, b)
    y_zero, s_zero = wkv7_chunked(r, w, k, v, a, b, torch.zeros_like(state))
    y_ref, s_ref = wkv7_reference(r, w, k, v, a, b)
    assert torch.equal(y, y_zero) and torch.equal(s, s_zero)
    assert rel_err(y, y_ref) < 1e-10 and rel_err(s, s_ref) < 1e-10


def test_float32_long_sequence_agrees_with_float64_reference():
    tensors = rwkv_inputs(1, 1024, 2, 64, seed=7)
    y_ref, s_ref = wkv7_reference(*tensors)
    y, s = wkv7_chunked(*[t.float() for t in tensors])
    assert y.dtype == torch.float32 and s.dtype == torch.float32
    assert rel_err(y.double(), y_ref) < 1e-4
    assert rel_err(s.double(), s_ref) < 1e-4


@functools.lru_cache(maxsize=None)
def float64_recurrence_4096(w_range: tuple[float, float]):
    """Inputs of 4096 tokens in a decay range, and the plain per-step recurrence's values, final state and
    gradients on them in float64 (about 2 s: computed once per range)."""
    tensors = rwkv_inputs(1, 4096, 1, 16, seed=3, w_range=w_range)
    return tensors, run_with_grads(wkv7_reference, tensors)


@pytest.mark.parametrize("chunk", [16, 32])
@pytest.mark.parametrize("w_range", [(-0.6066, -0.6), (-1e-4, 0.0)])
def test_float32_stable_over_4096_tokens_at_the_decay_extremes(w_range, chunk):
    """Strongest and weakest RWKV-7 decay, T = 4096: the chunked form's float32 values and gradients stay
    within 1e-5 of the plain per-step recurrence in float64, which shares no code with it (measured: 1e-6 at
    most; the float32 per-step recurrence itself is about 3e-7 off)."""
    tensors, (y64, s64, g64) = float64_recurrence_4096(w_range)
    y32, s32, g32 = run_with_grads(functools.partial(wkv7_chunked, chunk=chunk), [t.float() for t in tensors])
    assert y32.dtype == torch.float32
    assert rel_err(y32.double(), y64) < 1e-5
    assert rel_err(s32.double(), s64) < 1e-5
    for name, grad, grad_ref in zip(NAMES, g32, g64):
        assert rel_err(grad.double(), grad_ref) < 1e-5, name


def test_gradcheck_through_the_operator():
    """Fails for any operator whose backward is missing, detached or wrong."""
    tensors = [t.requires_grad_() for t in rwkv_inputs(1, 6, 1, 3, seed=5)]
    op = functools.partial(wkv7_chunked, chunk=4)  # two chunks: the state hand-over is checked too
    assert torch.autograd.gradcheck(op, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_entry_point_gives_nonzero_gradients_for_every_input():
    leaves = [t.requires_grad_() for t in rwkv_inputs(1, 20, 2, 8, dtype=torch.float32)]
    y, s = wkv7(*leaves)
    (y.square().mean() + s.square().mean()).backward()
    for name, leaf in zip(NAMES, leaves):
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0, name


@pytest.mark.parametrize("split", [1, 16, 23])
def test_state_hand_over_between_pieces(split):
    tensors = rwkv_inputs(2, 40, 2, 8, seed=split)
    *seq, state = tensors
    y_whole, s_whole = wkv7_chunked(*seq, state)
    y1, s1 = wkv7_chunked(*[x[:, :split] for x in seq], state)
    y2, s2 = wkv7_chunked(*[x[:, split:] for x in seq], s1)
    assert rel_err(torch.cat([y1, y2], dim=1), y_whole) < 1e-12
    assert rel_err(s2, s_whole) < 1e-12


def test_empty_sequence_returns_the_state_and_passes_its_gradient():
    *seq, state = rwkv_inputs(2, 0, 2, 4)
    state.requires_grad_()
    y, s = wkv7_chunked(*seq, state)
    assert y.shape == (2, 0, 2, 4)
    assert torch.equal(s, state)
    s.sum().backward()
    assert torch.equal(state.grad, torch.ones_like(state))


def test_bfloat16_inputs_keep_a_float32_state():
    *seq, state = rwkv_inputs(1, 33, 2, 8, dtype=torch.float32)
    y, s = wkv7_chunked(*[x.bfloat16() for x in seq], state)
    y_ref, s_ref = wkv7_reference(*[x.bfloat16().float() for x in seq], state)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert rel_err(y.float(), y_ref) < 1e-2
    assert rel_err(s, s_ref) < 1e-5


def test_entry_point_falls_back_when_a_device_kernel_fails(caplog):
    def broken_kernel(*args):
        raise RuntimeError("kernel not built")

    tensors = rwkv_inputs(1, 9, 1, 4)
    wkv.register_backend("cpu", broken_kernel)
    try:
        with caplog.at_level(logging.WARNING, logger="core.network.wkv"):
            y, s = wkv7(*tensors)
            y_again, _ = wkv7(*tensors)
    finally:
        wkv._BACKENDS.pop("cpu", None)
        wkv._FAILED.discard("cpu")
    y_ref, s_ref = wkv7_reference(*tensors)
    assert rel_err(y, y_ref) < 1e-10 and rel_err(s, s_ref) < 1e-10
    assert torch.equal(y, y_again)
    assert sum("kernel not built" in rec.getMessage() for rec in caplog.records) == 1


def test_rejects_mismatched_shapes_and_bad_chunk_sizes():
    r, w, k, v, a, b, state = rwkv_inputs(1, 8, 2, 4)
    with pytest.raises(ValueError, match="one shape"):
        wkv7_chunked(r, w[:, :4], k, v, a, b, state)
    with pytest.raises(ValueError, match="power of two"):
        wkv7_chunked(r, w, k, v, a, b, state, chunk=12)


def test_backward_keeps_little_memory():
    """Only the inputs and one state per chunk stay alive between forward and backward
    (autograd through every intermediate of the chunked maths kept about 5.5x the inputs)."""
    leaves = [t.requires_grad_() for t in rwkv_inputs(2, 256, 2, 64, dtype=torch.float32)]
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        wkv7_chunked(*leaves)
    input_bytes = sum(t.numel() * t.element_size() for t in leaves[:6])
    assert sum(storages.values()) < 2 * input_bytes

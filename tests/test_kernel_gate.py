"""The CUDA kernel's first-use self-test (core/network/cuda/op.py: compare_backends, KernelGate).

The decision logic runs here on the CPU: the backend under test is injected (the sequential
reference WKV, which is right, and versions of it with the bugs a kernel can have), the judge is
the real chunked PyTorch path. On a GPU the real kernel goes through the same gate.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from core.network.cuda import op
from core.network.wkv import wkv7_chunked, wkv7_reference

CPU = torch.device("cpu")
DTYPES = (torch.float32, torch.bfloat16)


def correct(r, w, k, v, a, b, state):
    return wkv7_reference(r, w, k, v, a, b, state)


def ignores_initial_state(r, w, k, v, a, b, state):
    return wkv7_reference(r, w, k, v, a, b, None)


def drops_last_token(r, w, k, v, a, b, state):
    y, s = wkv7_reference(r, w, k, v, a, b, state)
    return torch.cat([y[:, :-1], torch.zeros_like(y[:, -1:])], dim=1), s


def writes_a_nan(r, w, k, v, a, b, state):
    y, s = wkv7_reference(r, w, k, v, a, b, state)
    return y.index_put((torch.tensor(0), torch.tensor(3), torch.tensor(1), torch.tensor(5)),
                       torch.tensor(float("nan"), dtype=y.dtype)), s


def crashes(r, w, k, v, a, b, state):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


class _NegatedGradient(torch.autograd.Function):
    """Identity forward, negated gradient: a kernel whose forward is right and backward wrong."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def wrong_decay_gradient(r, w, k, v, a, b, state):
    return wkv7_reference(r, _NegatedGradient.apply(w), k, v, a, b, state)


def gate_for(backend):
    calls = []

    def kernel(for_backward):
        calls.append(for_backward)
        return backend
    return op.KernelGate(kernel, reference=wkv7_chunked), calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backward", [False, True])
def test_a_correct_backend_passes(dtype, backward):
    assert op.compare_backends(correct, wkv7_chunked, CPU, dtype, backward) is None


@pytest.mark.parametrize("backend,problem", [
    (ignores_initial_state, "y is off"),
    (drops_last_token, "y is off"),
    (writes_a_nan, "y is off by nan"),
    (crashes, "raised RuntimeError: CUDA error"),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wrong_forward_is_caught(backend, problem, dtype):
    why = op.compare_backends(backend, wkv7_chunked, CPU, dtype, backward=False)
    assert why is not None and problem in why


def test_a_wrong_backward_is_caught_only_where_training_needs_it():
    assert op.compare_backends(wrong_decay_gradient, wkv7_chunked, CPU, torch.float32, backward=False) is None
    why = op.compare_backends(wrong_decay_gradient, wkv7_chunked, CPU, torch.float32, backward=True)
    assert why is not None and "gradient of w" in why


def test_the_tolerance_separates_rounding_from_bugs():
    """Measured margins: a correct backend's error is far below the tolerance, a 5 % error in one
    input's use far above it (so the tolerance neither rejects good kernels nor hides bugs)."""
    inputs, state, _, _ = op.self_test_problem(CPU, torch.float32)
    y_ref, _ = wkv7_chunked(*(x.double() for x in inputs), state.double())
    y_ok, _ = wkv7_reference(*inputs, state)
    r, w, k, v, a, b = inputs
    y_bad, _ = wkv7_reference(r, w, k, v * 1.05, a, b, state)
    assert op._rel_rms(y_ok, y_ref) < op.SELF_TEST_TOLERANCE[torch.float32] / 100
    assert op._rel_rms(y_bad, y_ref) > op.SELF_TEST_TOLERANCE[torch.float32] * 5


def test_the_gate_uses_a_correct_backend_and_decides_once():
    gate, calls = gate_for(correct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a good kernel
        assert gate.trusted(CPU, torch.float32, backward=True)
        assert gate.trusted(CPU, torch.float32, backward=False)   # implied by the training check
        assert gate.trusted(CPU, torch.float32, backward=True)
    assert calls == [True]
    assert gate.trusted(CPU, torch.bfloat16, backward=False) and calls == [True, False]


def test_the_gate_refuses_a_wrong_backend_and_warns_once():
    gate, calls = gate_for(ignores_initial_state)
    with pytest.warns(RuntimeWarning, match="(?s)failed its self-test.*y is off.*PyTorch WKV path"):
        assert not gate.trusted(CPU, torch.float32, backward=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # said once, whatever is asked next
        assert not gate.trusted(CPU, torch.float32, backward=False)
        assert not gate.trusted(CPU, torch.float32, backward=True)   # no training on a wrong forward
        assert not gate.trusted(CPU, torch.bfloat16, backward=False)
    assert calls == [False, False]
    assert all("off" in why for why in gate.reasons.values())


def test_the_gate_keeps_a_right_forward_when_only_the_backward_is_wrong():
    gate, _ = gate_for(wrong_decay_gradient)
    assert gate.trusted(CPU, torch.float32, backward=False)
    with pytest.warns(RuntimeWarning, match="gradient of w"):
        assert not gate.trusted(CPU, torch.float32, backward=True)
    assert gate.trusted(CPU, torch.float32, backward=False)


def test_the_self_test_leaves_the_callers_random_stream_and_modes_alone():
    gate, _ = gate_for(correct)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert gate.trusted(CPU, torch.float32, backward=False)
    with torch.no_grad():
        assert gate.trusted(CPU, torch.bfloat16, backward=True)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none available)")
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_real_kernel_passes_its_self_test_on_this_gpu(dtype):
    if op.load_extension() is None:
        pytest.skip("the CUDA kernel could not be built here (see the warning)")
    gate = op.KernelGate(op._kernel_for, wkv7_chunked)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gate.trusted(torch.device("cuda"), dtype, backward=True), gate.reasons
    assert op._gate.trusted(torch.device("cuda"), dtype, backward=True), op._gate.reasons

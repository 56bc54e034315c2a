"""The C++ CPU kernels (core/cpu_kernels.cpp): the fused one-token step against the torch-op step, on
the bundled model and on odd shapes, its fallback when the compiler is broken, and the forward-only WKV."""
import warnings
from pathlib import Path

import pytest
import torch

from core import cpu_kernels, jit_build
from core.checkpoint import load_checkpoint
from core.model import ModelConfig, RWKV7
from core.step import CppStepper, TorchStepper, cpp_applies, prepare
from tests.small_models import odd_sized_model

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "rwkv7-music-base.pth"


def run_both(model, tokens, state):
    """Step through tokens [B,T] with the fused step and with the torch-op step from `state`;
    returns the logits [B,T,V] and final states of each."""
    results = []
    for backend in ("step-cpp", "step-torch"):
        s, outs = state, []
        for t in range(tokens.shape[1]):
            logits, s = model.step(tokens[:, t], s, backend)
            outs.append(logits)
        assert isinstance(prepare(model, backend), CppStepper if backend == "step-cpp" else TorchStepper)
        results.append((torch.stack(outs, 1), s))
    return results


def assert_close(a, b, tol=1e-5):
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("batch", [1, 3])
def test_fused_step_matches_the_torch_op_step_on_the_bundled_model(batch):
    model, _ = load_checkpoint(str(BUNDLED))
    g = torch.Generator().manual_seed(batch)
    prompt = torch.randint(0, model.config.vocab_size, (batch, 64), generator=g)
    _, state = model.prefill(prompt)  # a state with real content, prefill's non-contiguous views
    tokens = torch.randint(0, model.config.vocab_size, (batch, 200), generator=g)
    (fused, f_state), (ref, r_state) = run_both(model, tokens, state)
    assert_close(fused, ref)
    for a, b in zip(f_state.att_x + f_state.wkv + f_state.ffn_x, r_state.att_x + r_state.wkv + r_state.ffn_x):
        assert_close(a, b)
    # and it is the model: the same logits as one parallel pass over prompt + tokens
    with torch.no_grad():
        full = model(torch.cat([prompt, tokens], 1))
    assert_close(fused, full[:, 64:])


def test_fused_step_handles_odd_sizes_and_a_style_state():
    # head size 32, low-rank sizes that are not multiples of the vector width, 3 heads
    model = odd_sized_model()
    cfg = model.config
    style = torch.randn(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size)
    state = model.init_state(2, wkv=style)  # expanded (stride-0) views of one style
    tokens = torch.randint(0, cfg.vocab_size, (2, 30), generator=torch.Generator().manual_seed(1))
    (fused, _), (ref, _) = run_both(model, tokens, state)
    assert_close(fused, ref)
    assert torch.equal(state.wkv[0][0], style[0])  # the input state is left alone


def test_fused_step_rejects_bad_tokens_with_a_clear_error():
    model, _ = load_checkpoint(str(BUNDLED))
    with pytest.raises(RuntimeError, match="out of range"):
        model.step(torch.tensor([model.config.vocab_size]), model.init_state(1))


def test_a_broken_compiler_falls_back_to_the_torch_op_step(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv(jit_build.CACHE_ENV, str(tmp_path))  # no cached build to reuse
    cpu_kernels._builds.forget()
    try:
        model, _ = load_checkpoint(str(BUNDLED))
        with pytest.warns(RuntimeWarning, match="(?s)fused CPU step unavailable.*failed.*torch-op step"):
            logits, _ = model.step(torch.tensor([3]), model.init_state(1))
        assert isinstance(prepare(model), TorchStepper)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            model2, _ = load_checkpoint(str(BUNDLED))
            again, _ = model2.step(torch.tensor([3]), model2.init_state(1))
        assert torch.equal(logits, again)
    finally:
        cpu_kernels._builds.forget()


def test_build_is_cached_by_content_outside_the_working_directory(tmp_path, monkeypatch):
    kwargs = cpu_kernels.load_kwargs()
    monkeypatch.chdir(tmp_path)
    assert cpu_kernels.load_kwargs() == kwargs
    assert Path(kwargs["sources"][0]).is_absolute() and Path(kwargs["build_directory"]).is_absolute()
    assert kwargs["name"].isidentifier()


def test_deep_embed_and_float64_models_keep_the_torch_op_step():
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=20, deep_embed=True)).eval()
    assert not cpp_applies(model)
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=20)).eval().double()
    assert not cpp_applies(model)
    model.step(torch.tensor([1]), model.init_state(1))
    assert isinstance(prepare(model), TorchStepper)


def rwkv_like(B, T, H, N, seed):
    g = torch.Generator().manual_seed(seed)
    r, k, v = (torch.randn(B, T, H, N, generator=g) for _ in range(3))
    w = -torch.exp(torch.randn(B, T, H, N, generator=g) * 0.5 - 1)  # log decay, as the model makes it
    kk = torch.nn.functional.normalize(torch.randn(B, T, H, N, generator=g), dim=-1)
    rate = torch.rand(B, T, H, N, generator=g)
    return r, w, k, v, -kk, kk * rate, torch.randn(B, H, N, N, generator=g)


@pytest.mark.parametrize("B, T, H, N, with_state", [(2, 37, 3, 64, True), (1, 5, 1, 16, False), (3, 130, 2, 64, True)])
def test_forward_only_wkv_matches_the_float64_reference(B, T, H, N, with_state):
    from core.wkv import wkv7, wkv7_reference
    r, w, k, v, a, b, s0 = rwkv_like(B, T, H, N, seed=T)
    start = s0 if with_state else None
    with torch.no_grad():
        y, s_end = wkv7(r, w, k, v, a, b, start, backend="prefill")
    y_cpp, s_cpp = cpu_kernels.load_extension().wkv_forward(r, w, k, v, a, b, s0 if with_state else r.new_empty(0))
    assert torch.equal(y, y_cpp) and torch.equal(s_end, s_cpp)  # "prefill" on the CPU is the C++ loop
    y_ref, s_ref = wkv7_reference(*(x.double() for x in (r, w, k, v, a, b)),
                                  start.double() if with_state else None)
    assert y.dtype == torch.float32 and s_end.dtype == torch.float32
    assert_close(y.double(), y_ref)
    assert_close(s_end.double(), s_ref)
    if with_state:
        assert torch.equal(start, s0)  # the caller's state is not modified


def test_training_keeps_the_differentiable_wkv_path():
    from core.wkv import wkv7
    r, w, k, v, a, b, s0 = rwkv_like(1, 20, 1, 64, seed=3)
    s0.requires_grad_(True)
    y, _ = wkv7(r, w, k, v, a, b, s0, backend="train")
    y.sum().backward()
    assert s0.grad is not None and s0.grad.abs().sum() > 0

"""The C++ CPU kernels (core/network/cpu_kernels.cpp): the fused one-token step against the torch-op step, on
the bundled model and on odd shapes, its fallback when the compiler is broken, and the WKV recurrence:
forward only (prefill) and forward with backward (training)."""
import warnings
from pathlib import Path

import pytest
import torch

from core.network import cpu_kernels, jit_build
from core.network.checkpoint import load_checkpoint
from core.network.model import ModelConfig, RWKV7
from core.network.step import TorchStepper, cpp_applies, prepare, step_tokens
from tests.small_models import odd_sized_model, run_both, run_with_grads

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "rwkv7-music-base.pth"


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
        step_tokens(model, torch.tensor([model.config.vocab_size]), model.init_state(1))


def test_a_broken_compiler_falls_back_to_the_torch_op_step(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv(jit_build.CACHE_ENV, str(tmp_path))  # no cached build to reuse
    cpu_kernels._builds.forget()
    try:
        model, _ = load_checkpoint(str(BUNDLED))
        with pytest.warns(RuntimeWarning, match="(?s)fused CPU step unavailable.*failed.*torch-op step"):
            logits, _ = step_tokens(model, torch.tensor([3]), model.init_state(1))
        assert isinstance(prepare(model), TorchStepper)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            model2, _ = load_checkpoint(str(BUNDLED))
            again, _ = step_tokens(model2, torch.tensor([3]), model2.init_state(1))
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
    step_tokens(model, torch.tensor([1]), model.init_state(1))
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
    from core.network.wkv import wkv7, wkv7_reference
    r, w, k, v, a, b, s0 = rwkv_like(B, T, H, N, seed=T)
    start = s0 if with_state else None
    with torch.no_grad():
        y, s_end = wkv7(r, w, k, v, a, b, start, backend="prefill")
    y_cpp, s_cpp, kept = cpu_kernels.load_extension().wkv_forward(
        r, w, k, v, a, b, s0 if with_state else r.new_empty(0), 0)
    assert kept.numel() == 0  # prefill keeps no states for a backward
    assert torch.equal(y, y_cpp) and torch.equal(s_end, s_cpp)  # "prefill" on the CPU is the C++ loop
    y_ref, s_ref = wkv7_reference(*(x.double() for x in (r, w, k, v, a, b)),
                                  start.double() if with_state else None)
    assert y.dtype == torch.float32 and s_end.dtype == torch.float32
    assert_close(y.double(), y_ref)
    assert_close(s_end.double(), s_ref)
    if with_state:
        assert torch.equal(start, s0)  # the caller's state is not modified


def wkv_grads(op, inputs):
    """[y, final state, every input's gradient] of the random linear loss of tests/test_wkv.py."""
    y, s, grads = run_with_grads(op, inputs)
    return [y, s, *grads]


@pytest.mark.parametrize("B, T, H, N", [(2, 37, 2, 64), (1, 16, 1, 8), (3, 70, 2, 16), (1, 1, 1, 64)])
def test_training_wkv_and_its_backward_match_the_float64_reference(B, T, H, N):
    """The "train" backend on the CPU in float32 is the C++ loop and its C++ backward; every
    gradient, the initial state's included, agrees with autograd through the float64 reference.
    T 37 and 70 end inside a kept stretch of 16 tokens; T 16 ends on one."""
    from core.network.wkv import _CpuWKV7, wkv7, wkv7_reference
    inputs = rwkv_like(B, T, H, N, seed=T)
    seen = []
    real_apply = _CpuWKV7.apply
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_CpuWKV7, "apply", lambda *a: seen.append(1) or real_apply(*a))
        got = wkv_grads(lambda *x: wkv7(*x, backend="train"), inputs)
    assert seen, "the C++ path did not run"
    want = wkv_grads(wkv7_reference, [x.double() for x in inputs])
    for name, x, ref in zip(("y", "state", "r", "w", "k", "v", "a", "b", "state0"), got, want):
        assert x.dtype == torch.float32, name
        assert ((x.double() - ref).norm() / ref.norm()).item() < 2e-6, name


def test_training_wkv_without_a_state_or_a_final_state_gradient():
    from core.network.wkv import wkv7, wkv7_reference
    r, w, k, v, a, b, _ = rwkv_like(2, 40, 2, 64, seed=4)
    leaves = [x.clone().requires_grad_() for x in (r, w, k, v, a, b)]
    y, _ = wkv7(*leaves, backend="train")
    y.square().sum().backward()
    ref_leaves = [x.double().requires_grad_() for x in (r, w, k, v, a, b)]
    y_ref, _ = wkv7_reference(*ref_leaves)
    y_ref.square().sum().backward()
    for leaf, ref in zip(leaves, ref_leaves):
        assert ((leaf.grad.double() - ref.grad).norm() / ref.grad.norm()).item() < 2e-6


def test_training_wkv_gives_the_same_bits_on_any_number_of_threads():
    """Each head is one sequential loop on one thread, so the thread count cannot change a sum's order
    (a resumed run must match an unbroken one bit for bit)."""
    from core.network.wkv import wkv7
    inputs = rwkv_like(4, 50, 2, 64, seed=9)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(wkv_grads(lambda *x: wkv7(*x, backend="train"), inputs))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(x, y) for x, y in zip(results[0], other))


def test_training_wkv_keeps_the_inputs_and_one_state_per_16_tokens():
    from core.network.wkv import wkv7
    leaves = [x.requires_grad_() for x in rwkv_like(2, 256, 2, 64, seed=2)]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        wkv7(*leaves, backend="train")
    inputs = 6 * 2 * 256 * 2 * 64
    assert sum(saved) == inputs + 2 * 2 * (256 // 16) * 64 * 64


def test_training_wkv_falls_back_to_the_chunked_form():
    """A head size that the C++ backward's column blocks do not divide, and float64, take the chunked
    form; its gradients are those of the reference too."""
    from core.network.wkv import _CpuWKV7, wkv7, wkv7_reference
    for dtype, N in ((torch.float32, 12), (torch.float64, 64)):
        inputs = [x.to(dtype) for x in rwkv_like(1, 20, 2, N, seed=N)]
        with pytest.MonkeyPatch.context() as m:
            m.setattr(_CpuWKV7, "apply", lambda *a: pytest.fail("the C++ path ran"))
            got = wkv_grads(lambda *x: wkv7(*x, backend="train"), inputs)
        want = wkv_grads(wkv7_reference, [x.double() for x in inputs])
        for x, ref in zip(got, want):
            assert ((x.double() - ref).norm() / ref.norm()).item() < 2e-6

"""The WKV-7 CUDA backend (core/network/cuda): kernel maths, sources, build plumbing, and the GPU itself.

Without a GPU these still check: (a) a float64 transliteration of the kernel's algorithm (the
same row-per-thread state, the same 16-token snapshots and the same backward by inverting the
update) against autograd through `wkv7_reference`: the evidence that the backward derivation is
right; (b) the .cu compiles with nvcc for sm_80/86/89/90 and the binding parses against torch;
(c) the build arguments are absolute and follow the device; (d) a failed build gives a clear
message instead of an exception. The GPU tests skip with a reason where there is no CUDA device.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.network.cuda import build
from core.network.wkv import wkv7_reference

CUDA_DIR = Path(build.__file__).resolve().parent
CHUNK = 16
HAS_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none available)")
SEQ_NAMES = ("r", "w", "k", "v", "a", "b")


# ---- helpers --------------------------------------------------------------------------------

def rwkv_like_inputs(B, T, H, N=64, seed=0):
    """Float64 CPU tensors distributed as RWKV-7 produces them: decay in (0.545, 1), a = -kk,
    b = kk * rate with kk unit-norm per head; plus a non-zero initial state."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    r, k, v = randn(B, T, H, N) * 0.5, randn(B, T, H, N) * 0.5, randn(B, T, H, N)
    w = -0.606531 * torch.sigmoid(2 * randn(B, T, H, N))          # log decay
    kk = F.normalize(randn(B, T, H, N), dim=-1)
    rate = torch.sigmoid(randn(B, T, H, N))
    state = randn(B, H, N, N) * 0.3
    return dict(r=r, w=w, k=k, v=v, a=-kk, b=kk * rate), state


def rel_rms(x, ref):
    x, ref = x.double().cpu(), ref.double().cpu()
    return ((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def reference_grads(seqs, state, dy, dstate):
    """y, final state and the gradients of <y, dy> + <S_T, dstate> through wkv7_reference."""
    leaves = {n: x.clone().requires_grad_() for n, x in seqs.items()}
    s0 = state.clone().requires_grad_()
    y, s_end = wkv7_reference(*(leaves[n] for n in SEQ_NAMES), s0)
    ((y * dy).sum() + (s_end * dstate).sum()).backward()
    grads = {n: leaves[n].grad for n in SEQ_NAMES}
    grads["state"] = s0.grad
    return y.detach(), s_end.detach(), grads


# ---- a transliteration of wkv7.cu, vectorised over the threads ------------------------------
# Index i of the second-to-last axis is the thread (value row i in the forward, key column i in
# the backward); a trailing axis is that thread's register array; vectors broadcast along the
# thread axis are what the kernel reads from shared memory.

def kernel_model_forward(r, w, k, v, a, b, s0, chunk=CHUNK):
    B, T, H, N = r.shape
    s = s0.clone()                                   # s[..., i, j]: thread i's row S[i, j]
    y = torch.empty_like(r)
    sa_all = torch.empty_like(r)
    snapshots = []
    for t in range(T):
        if t % chunk == 0:
            snapshots.append(s.clone())              # state before token t
        d = torch.exp(w[:, t])
        sa = (s * a[:, t, :, None, :]).sum(-1)       # thread i: sum_j s[j] a[j]
        sa_all[:, t] = sa
        s = s * d[..., None, :] + sa[..., None] * b[:, t, :, None, :] + v[:, t, ..., None] * k[:, t, :, None, :]
        y[:, t] = (s * r[:, t, :, None, :]).sum(-1)
    snaps = torch.stack(snapshots, dim=2) if snapshots else s.new_zeros(B, H, 0, N, N)
    return y, s, sa_all, snaps


def kernel_model_backward(r, w, k, v, a, b, sa, snaps, s_end, dy, dstate_end, chunk=CHUNK):
    B, T, H, N = r.shape
    sT = s_end.transpose(-1, -2).clone()             # thread i: sT[m] = S[m, i]
    ds_row = dstate_end.clone()                      # thread i: dS[i, j]
    ds_col = dstate_end.transpose(-1, -2).clone()    # thread i: dS[m, i]
    grads = {n: torch.empty_like(r) for n in SEQ_NAMES}
    for t in reversed(range(T)):
        rt, wt, kt, vt, at, bt, sat, dyt = (x[:, t] for x in (r, w, k, v, a, b, sa, dy))
        d = torch.exp(wt)
        grads["r"][:, t] = (dyt[..., None, :] * sT).sum(-1)
        ds_row = ds_row + dyt[..., :, None] * rt[..., None, :]
        ds_col = ds_col + dyt[..., None, :] * rt[..., :, None]
        if t % chunk == 0:
            sT = snaps[:, :, t // chunk].transpose(-1, -2)
        else:
            sT = (sT - sat[..., None, :] * bt[..., :, None] - vt[..., None, :] * kt[..., :, None]) \
                * torch.exp(-wt)[..., None]
        grads["v"][:, t] = (ds_row * kt[..., None, :]).sum(-1)
        dsa = (ds_row * bt[..., None, :]).sum(-1)
        grads["k"][:, t] = (ds_col * vt[..., None, :]).sum(-1)
        grads["b"][:, t] = (ds_col * sat[..., None, :]).sum(-1)
        grads["w"][:, t] = (ds_col * sT).sum(-1) * d
        grads["a"][:, t] = (dsa[..., None, :] * sT).sum(-1)
        ds_row = ds_row * d[..., None, :] + dsa[..., :, None] * at[..., None, :]
        ds_col = ds_col * d[..., :, None] + dsa[..., None, :] * at[..., :, None]
    grads["state"] = ds_row
    return grads


def run_kernel_model(seqs, state, dy, dstate, dtype, chunk=CHUNK):
    cast = {n: x.to(dtype) for n, x in seqs.items()}
    args = [cast[n] for n in SEQ_NAMES]
    y, s_end, sa, snaps = kernel_model_forward(*args, state.to(dtype), chunk)
    grads = kernel_model_backward(*args, sa, snaps, s_end, dy.to(dtype), dstate.to(dtype), chunk)
    return y, s_end, grads


# ---- CPU: the algorithm ---------------------------------------------------------------------

@pytest.mark.parametrize("T", [37, 16, 1])
def test_kernel_algorithm_matches_autograd_in_float64(T):
    seqs, state = rwkv_like_inputs(B=2, T=T, H=2, seed=T)
    g = torch.Generator().manual_seed(100 + T)
    dy = torch.randn(seqs["r"].shape, generator=g, dtype=torch.float64)
    dstate = torch.randn(state.shape, generator=g, dtype=torch.float64)
    y_ref, s_ref, g_ref = reference_grads(seqs, state, dy, dstate)
    y, s_end, grads = run_kernel_model(seqs, state, dy, dstate, torch.float64)
    assert rel_rms(y, y_ref) < 1e-12 and rel_rms(s_end, s_ref) < 1e-12
    for name in (*SEQ_NAMES, "state"):
        assert rel_rms(grads[name], g_ref[name]) < 1e-9, name


@pytest.mark.parametrize("strongest_decay", [False, True])
def test_kernel_algorithm_is_accurate_in_float32_over_long_sequences(strongest_decay):
    """What the kernel does in float32 registers (inversion over 15 tokens between snapshots)
    stays within the fp32 tolerance of the public kernels over hundreds of tokens, even when
    every channel has RWKV-7's strongest decay (0.545: dividing by it amplifies rounding most)."""
    seqs, state = rwkv_like_inputs(B=1, T=160, H=1, seed=7)
    if strongest_decay:
        seqs["w"] = torch.full_like(seqs["w"], -0.606531)
    g = torch.Generator().manual_seed(8)
    dy = torch.randn(seqs["r"].shape, generator=g, dtype=torch.float64)
    dstate = torch.randn(state.shape, generator=g, dtype=torch.float64)
    y_ref, s_ref, g_ref = reference_grads(seqs, state, dy, dstate)
    y, s_end, grads = run_kernel_model(seqs, state, dy, dstate, torch.float32)
    assert rel_rms(y, y_ref) < 2e-4 and rel_rms(s_end, s_ref) < 2e-4
    for name in (*SEQ_NAMES, "state"):
        assert rel_rms(grads[name], g_ref[name]) < 2e-3, name


def test_snapshots_are_what_keeps_the_inversion_accurate():
    """Control: undoing the update over 64 tokens instead of 16 ruins the key-side gradients
    in float32, so the accuracy test above can fail and the snapshot interval matters."""
    seqs, state = rwkv_like_inputs(B=1, T=128, H=1, seed=7)
    dy = torch.randn(seqs["r"].shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    dstate = torch.zeros_like(state)
    _, _, g_ref = reference_grads(seqs, state, dy, dstate)
    _, _, grads = run_kernel_model(seqs, state, dy, dstate, torch.float32, chunk=64)
    assert rel_rms(grads["w"], g_ref["w"]) > 2e-3


def test_kernel_algorithm_with_empty_sequence_passes_state_through():
    seqs, state = rwkv_like_inputs(B=1, T=0, H=1, seed=1)
    dstate = torch.randn(state.shape, dtype=torch.float64)
    y, s_end, grads = run_kernel_model(seqs, state, torch.zeros(1, 0, 1, 64, dtype=torch.float64),
                                       dstate, torch.float64)
    assert y.shape == (1, 0, 1, 64) and torch.equal(s_end, state)
    assert torch.equal(grads["state"], dstate)


# ---- CPU: sources and build plumbing --------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cu_source_compiles_for_ampere_ada_hopper(tmp_path):
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS
    archs = ("80", "86", "89", "90")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    # The flags torch's JIT build passes (no implicit half/bf16 conversions, C++20) plus ours.
    cmd = ["nvcc", "-c", "-std=c++20", *COMMON_NVCC_FLAGS, *build.CUDA_FLAGS, "-Xcompiler=-fPIC",
           "--threads", str(len(archs)), *gencode, "-Werror", "all-warnings",
           str(CUDA_DIR / "wkv7.cu"), "-o", str(tmp_path / "wkv7.o")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if shutil.which("cuobjdump"):  # the object really holds code for every architecture
        listing = subprocess.run(["cuobjdump", "--list-elf", str(tmp_path / "wkv7.o")],
                                 capture_output=True, text=True)
        for a in archs:
            assert f"sm_{a}" in listing.stdout


def test_cu_source_includes_no_torch_header():
    text = (CUDA_DIR / "wkv7.cu").read_text()
    assert "#include <torch" not in text and "#include <ATen" not in text and "#include <c10" not in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("g++") is None,
                    reason="needs nvcc and g++")
def test_binding_and_kernels_link_into_an_importable_module(tmp_path):
    """Compile wkv7_bind.cpp against torch and wkv7.cu with nvcc, link them (nvcc links the CUDA
    runtime statically) and import the result: declarations and definitions agree, and the
    binding's checks answer with a Python error (no GPU needed for either)."""
    import importlib.util
    from torch.utils.cpp_extension import include_paths, library_paths
    name = "wkv7_link_check"
    steps = [
        ["g++", "-std=c++20", "-O0", "-fPIC", "-c", f"-DTORCH_EXTENSION_NAME={name}",
         "-DTORCH_API_INCLUDE_EXTENSION_H", *(f"-I{p}" for p in include_paths()),
         f"-I{sysconfig.get_paths()['include']}", str(CUDA_DIR / "wkv7_bind.cpp"), "-o", "bind.o"],
        ["nvcc", "-c", "-std=c++20", "-Xcompiler=-fPIC", "-arch=sm_80", str(CUDA_DIR / "wkv7.cu"),
         "-o", "wkv7.o"],
        ["nvcc", "-shared", "bind.o", "wkv7.o", *(f"-L{p}" for p in library_paths()),
         "-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python", "-o", f"{name}.so"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, f"{cmd[0]}: {done.stderr[-3000:]}"
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.so")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.head_size() == 64
    cpu = torch.zeros(1, 4, 1, 64)
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        module.forward(cpu, cpu, cpu, cpu, cpu, cpu, torch.zeros(1, 1, 64, 64), True, 0)


def test_build_plan_is_absolute_and_independent_of_cwd(tmp_path, monkeypatch):
    here = build.build_plan((8, 9))
    monkeypatch.chdir(tmp_path)
    plan = build.build_plan((8, 9))
    assert plan == here
    assert len(plan.sources) == 2
    for source in plan.sources:
        assert os.path.isabs(source) and Path(source).is_file()
    assert os.path.isabs(plan.build_directory)
    assert plan.env() == {"TORCH_CUDA_ARCH_LIST": "8.9"}
    kwargs = plan.load_kwargs()
    assert kwargs["sources"] == plan.sources and kwargs["name"].isidentifier()


def test_build_plan_follows_the_device_capability(monkeypatch):
    # The capability query is the only stand-in: the machine running CI has no GPU.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    plan = build.build_plan(build.device_capability("cuda:0"))
    assert plan.arch_list == "8.6"
    other = build.build_plan((9, 0))
    assert other.arch_list == "9.0"
    assert other.name != plan.name and other.build_directory != plan.build_directory


def test_build_cache_lives_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(build.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    plan = build.build_plan((8, 0))
    assert Path(plan.build_directory).parent == tmp_path / "rwkv-music" / "cuda"
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "mine"))
    assert Path(build.build_plan((8, 0)).build_directory).parent == tmp_path / "mine"


def test_failed_build_returns_a_clear_message(tmp_path, monkeypatch):
    """A broken compiler (CXX=/bin/false): compile_plan reports why instead of raising."""
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    module, why = build.compile_plan(build.build_plan((8, 0)))
    assert module is None
    assert "failed" in why and str(tmp_path) in why
    assert "falling back" in build.fallback_warning(why)


@pytest.mark.skipif(HAS_GPU, reason="checks the CPU-only message")
def test_load_extension_without_cuda_warns_once_and_returns_none():
    build.forget_builds()
    with pytest.warns(RuntimeWarning, match="(?s)CUDA kernel unavailable.*falling back"):
        assert build.load_extension() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build.load_extension() is None   # remembered: no second warning
    build.forget_builds()


def test_checkpointed_helper_recomputes_to_the_same_gradients():
    from tools.cuda_training import checkpointed, mixed_precision
    from core.network.wkv import wkv7_chunked
    seqs, state = rwkv_like_inputs(1, 24, 1, seed=4)

    def grads(enabled):
        leaves = [seqs[n].float().requires_grad_() for n in SEQ_NAMES]
        s0 = state.float().requires_grad_()
        y, s = checkpointed(wkv7_chunked, *leaves, s0, enabled=enabled)
        (y.square().sum() + s.sum()).backward()
        return [x.grad for x in (*leaves, s0)]

    for plain, ckpt in zip(grads(False), grads(True)):
        assert torch.allclose(plain, ckpt, rtol=1e-5, atol=1e-6)
    with mixed_precision(torch.device("cpu")):           # autocast only on a CUDA device
        assert not torch.is_autocast_enabled("cpu")


# ---- GPU: the real kernel -------------------------------------------------------------------

def _gpu_case(B, T, H, dtype, seed):
    seqs, state = rwkv_like_inputs(B, T, H, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    dy = torch.randn(seqs["r"].shape, generator=g, dtype=torch.float64)
    dstate = torch.randn(state.shape, generator=g, dtype=torch.float64)
    # The reference sees exactly the (rounded) values the kernel sees.
    seqs = {n: x.to(dtype).double() for n, x in seqs.items()}
    y_ref, s_ref, g_ref = reference_grads(seqs, state, dy.to(dtype).double(), dstate)
    leaves = {n: x.to("cuda", dtype).requires_grad_() for n, x in seqs.items()}
    s0 = state.to("cuda", torch.float32).requires_grad_()
    return leaves, s0, dy.to("cuda", dtype), dstate.to("cuda", torch.float32), (y_ref, s_ref, g_ref)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 8e-3)])
@pytest.mark.parametrize("T", [1, 16, 75, 600])
def test_kernel_matches_reference_values_and_gradients(dtype, tol, T):
    from core.network.cuda import wkv7_cuda
    leaves, s0, dy, dstate, (y_ref, s_ref, g_ref) = _gpu_case(2, T, 3, dtype, seed=T)
    y, s_end = wkv7_cuda(*(leaves[n] for n in SEQ_NAMES), s0)
    assert y.dtype == dtype and s_end.dtype == torch.float32 and y.shape == leaves["r"].shape
    ((y.float() * dy.float()).sum() + (s_end * dstate).sum()).backward()
    assert rel_rms(y, y_ref) < tol and rel_rms(s_end, s_ref) < tol
    for name in SEQ_NAMES:
        assert leaves[name].grad.dtype == dtype
        assert rel_rms(leaves[name].grad, g_ref[name]) < tol, name
    assert rel_rms(s0.grad, g_ref["state"]) < tol


@needs_gpu
@pytest.mark.gpu
def test_kernel_without_initial_state_and_through_the_dispatch():
    from core.network.cuda import wkv7_cuda
    from core.network.wkv import wkv7
    seqs, _ = rwkv_like_inputs(1, 40, 2, seed=3)
    gpu = [seqs[n].to("cuda", torch.float32) for n in SEQ_NAMES]
    y, s_end = wkv7_cuda(*gpu)
    y_ref, s_ref = wkv7_reference(*(seqs[n] for n in SEQ_NAMES))
    assert rel_rms(y, y_ref) < 2e-3 and rel_rms(s_end, s_ref) < 2e-3
    y_d, s_d = wkv7(*gpu)
    assert torch.equal(y_d, y) and torch.equal(s_d, s_end)   # wkv7 on CUDA runs this kernel
    with torch.inference_mode():                              # no saving for backward
        y_i, _ = wkv7_cuda(*gpu)
    assert torch.equal(y_i, y)


@needs_gpu
@pytest.mark.gpu
def test_build_plan_uses_the_real_device():
    major, minor = torch.cuda.get_device_capability()
    assert build.build_plan(build.device_capability()).arch_list == f"{major}.{minor}"
    assert build.load_extension() is not None


def _small_model(seed=0):
    from core.network.model import ModelConfig, RWKV7
    torch.manual_seed(seed)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=128, vocab_size=97))
    with torch.no_grad():  # init zeroes the output projections; give every path a gradient
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@needs_gpu
@pytest.mark.gpu
def test_whole_model_loss_and_gradients_gpu_match_cpu():
    cpu_model = _small_model()
    gpu_model = _small_model().cuda()
    idx = torch.randint(0, 97, (2, 50), generator=torch.Generator().manual_seed(1))

    def loss_and_grads(model, device):
        model.zero_grad()
        logits = model(idx[:, :-1].to(device))
        loss = F.cross_entropy(logits.float().reshape(-1, 97), idx[:, 1:].reshape(-1).to(device))
        loss.backward()
        return loss.item(), {n: p.grad.detach().cpu() for n, p in model.named_parameters()
                             if p.grad is not None}

    loss_cpu, grads_cpu = loss_and_grads(cpu_model, "cpu")
    loss_gpu, grads_gpu = loss_and_grads(gpu_model, "cuda")
    assert abs(loss_cpu - loss_gpu) < 1e-3 * abs(loss_cpu)
    assert grads_cpu.keys() == grads_gpu.keys()
    for name, g in grads_cpu.items():
        if g.abs().max() > 0:
            assert rel_rms(grads_gpu[name], g) < 2e-2, name


@needs_gpu
@pytest.mark.gpu
def test_short_bf16_training_run_lowers_the_loss():
    from tools.cuda_training import mixed_precision
    model = _small_model(seed=2).cuda()
    g = torch.Generator().manual_seed(3)
    pattern = torch.randint(0, 97, (12,), generator=g)
    data = pattern.repeat(2, 8).cuda()                      # [2, 96] a learnable repetition
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        with mixed_precision(torch.device("cuda")):
            logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 97), data[:, 1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(map(lambda x: x == x, losses))               # no NaN
    assert losses[-1] < 0.5 * losses[0]


@needs_gpu
@pytest.mark.gpu
def test_gradient_checkpointing_gives_the_same_gradients():
    from tools.cuda_training import checkpointed
    seqs, state = rwkv_like_inputs(1, 48, 2, seed=9)
    from core.network.cuda import wkv7_cuda

    def run(use_checkpoint):
        leaves = [seqs[n].to("cuda", torch.float32).requires_grad_() for n in SEQ_NAMES]
        y, s = checkpointed(wkv7_cuda, *leaves, state.to("cuda", torch.float32),
                            enabled=use_checkpoint)
        (y.square().sum() + s.sum()).backward()
        return [x.grad for x in leaves]

    for plain, ckpt in zip(run(False), run(True)):
        assert torch.allclose(plain, ckpt)


# Last on purpose: after it the real build is loaded again (a different build folder makes torch
# re-run ninja on it), so nothing before pays for that.
@needs_gpu
@pytest.mark.gpu
def test_broken_compiler_falls_back_with_a_warning(tmp_path, monkeypatch):
    from core.network import wkv
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))        # no cached build to reuse
    build.forget_builds()
    try:
        seqs, state = rwkv_like_inputs(1, 20, 1, seed=5)
        gpu = [seqs[n].to("cuda", torch.float32) for n in SEQ_NAMES]
        with pytest.warns(RuntimeWarning, match="(?s)failed.*falling back"):
            y, s_end = wkv.wkv7(*gpu, state.to("cuda", torch.float32))
        y_ref, s_ref = wkv7_reference(*(seqs[n] for n in SEQ_NAMES), state)
        assert rel_rms(y, y_ref) < 2e-3 and rel_rms(s_end, s_ref) < 2e-3
    finally:
        build.forget_builds()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q"]))

"""The WKV-7 operator: S_t = S_{t-1} diag(exp(w_t)) + (S_{t-1} a_t) b_t^T + v_t k_t^T,  y_t = S_t r_t.

Shapes: r, w, k, v, a, b are [B, T, H, N]; `w` is the LOG of the decay (<= 0). The state S is
[B, H, N, N] indexed S[b, h, value_i, key_j], kept in float32 (float64 when the inputs are float64).
RWKV-7 calls it with a = -kk and b = kk * a_rate.

One entry point, `wkv7(..., backend=)`, picks the code from what the caller asks for ("train":
differentiable, "prefill": forward only) and where the tensors are; every path returns (y [B,T,H,N] in
the input dtype, final state), and the "train" ones give gradients for every input, the initial state
included.

Implementations:
- `wkv7_reference`: the plain sequential recurrence (ground truth for tests).
- `wkv7_chunked`: the path for float64, a head size the C++ backward does not take, a failed C++ build
  and any device without a registered kernel. It splits T
  into chunks of CHUNK tokens; everything inside a chunk is batched matmuls over all chunks at once, and
  only a short loop of small matmuls carries the state from chunk to chunk. Its backward is written
  out (the reverse walk over chunks) and keeps only the inputs and the chunk-start states.
- Device kernels (e.g. the CUDA one in core/network/cuda/) plug in with `register_backend("cuda", fn)`.
- On the CPU in float32: the sequential loop in C++ of core/network/cpu_kernels.cpp, heads in parallel; it
  needs no chunk algebra. For "prefill" it only runs forward; for "train" it keeps the state every
  16 tokens and its C++ backward recomputes from those (float64 and a failed build: the chunked form).

Chunk maths (per batch and head, one chunk of L tokens, positions t = 1..L, start state S0).
Let c_t = w_1 + ... + w_t (c_0 = 0) be the log of the decay accumulated inside the chunk and
u_t = S_{t-1} a_t. Unrolling the recurrence inside the chunk:
    S_t = S0 diag(e^{c_t}) + sum_{s<=t} (u_s b_s^T + v_s k_s^T) diag(e^{c_t - c_s})
so, with rows indexed by position (U = [u_t], V = [v_t], ...):
    u_t = S0 (a_t e^{c_{t-1}}) + sum_{s<t} (a_t e^{c_{t-1}-c_s} . b_s) u_s + (a_t e^{c_{t-1}-c_s} . k_s) v_s
    => (I - M_ab) U = A_dec S0^T + M_ak V,   solved once per chunk (M_ab is strictly lower triangular)
    with p = (I - M_ab)^-1 A_dec and q = (I - M_ab)^-1 M_ak V, U = p S0^T + q, and then
    Y   = R_dec S0^T + M_rb U + M_rk V       (M_rb, M_rk lower triangular, diagonal included)
    S_L = S0 diag(e^{c_L}) + U^T B_bar + V^T K_bar,   B_bar_s = b_s e^{c_L - c_s}, same for K_bar.
The pairwise factor e^{c_{t-1}-c_s} is split as e^{c_{t-1}-m} * e^{m-c_s} with m the cumulative decay at
the chunk's middle, so no factor exceeds e^{|w| L / 2} (about 130 for L = 16 at the strongest RWKV-7
decay): divisions by the decay are bounded however long T is, because they never cross a chunk.
"""
from __future__ import annotations

import logging
import math
from typing import Callable, NamedTuple

import torch

from core.network import cpu_kernels

log = logging.getLogger(__name__)

CHUNK = 16  # tokens per chunk; a power of two (the triangular inverse below doubles powers)
WKV_BACKENDS = ("train", "prefill")

Backend = Callable[..., tuple[torch.Tensor, torch.Tensor]]
_BACKENDS: dict[str, Backend] = {}
_FAILED: set[str] = set()


def _state_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def wkv7_reference(r, w, k, v, a, b, state=None):
    """Plain sequential recurrence, differentiable by autograd: the ground truth for tests."""
    B, T, H, N = r.shape
    out_dtype, dt = r.dtype, _state_dtype(r)
    S = torch.zeros(B, H, N, N, dtype=dt, device=r.device) if state is None else state.to(dt)
    r, w, k, v, a, b = (x.to(dt) for x in (r, w, k, v, a, b))
    decay = torch.exp(w)
    ys = []
    for t in range(T):
        sa = torch.einsum("bhij,bhj->bhi", S, a[:, t])
        S = (S * decay[:, t, :, None, :] + sa[..., None] * b[:, t, :, None, :]
             + v[:, t, :, :, None] * k[:, t, :, None, :])
        ys.append(torch.einsum("bhij,bhj->bhi", S, r[:, t]))
    y = torch.stack(ys, dim=1) if ys else r.new_zeros(B, 0, H, N, dtype=dt)
    return y.to(out_dtype), S


def _to_chunks(x: torch.Tensor, T_pad: int, L: int, dt: torch.dtype) -> torch.Tensor:
    """[B, T, H, N] -> [n_chunks, B*H, L, N] in dtype dt, zero-padded at the end to T_pad tokens.
    Chunk-major, so that one chunk of every sequence is a contiguous slice."""
    B, T, H, N = x.shape
    x = x.to(dt)
    if T_pad != T:
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, T_pad - T))
    return x.view(B, T_pad // L, L, H, N).permute(1, 0, 3, 2, 4).reshape(T_pad // L, B * H, L, N)


def _from_chunks_transposed(y_t: torch.Tensor, B: int, T: int, H: int) -> torch.Tensor:
    """[n_chunks, B*H, N, L] (each chunk's output transposed) -> [B, T, H, N], padding dropped."""
    C, _, N, L = y_t.shape
    return y_t.view(C, B, H, N, L).permute(1, 0, 4, 2, 3).reshape(B, C * L, H, N)[:, :T]


def _unit_lower_inverse(M: torch.Tensor) -> torch.Tensor:
    """(I - M)^-1 for strictly lower triangular M [..., L, L], L a power of two.

    M is nilpotent (M^L = 0), so (I - M)^-1 = I + M + ... + M^{L-1} = (I + M)(I + M^2)(I + M^4)...:
    log2(L) batched matmuls, cheaper than a batched triangular solve on many tiny matrices.
    """
    L = M.shape[-1]
    inv = M + torch.eye(L, dtype=M.dtype, device=M.device)
    power = M
    for _ in range(int(math.log2(L)) - 1):
        power = power @ power
        inv = inv + inv @ power
    return inv


class _ChunkLocals(NamedTuple):
    """What each chunk contributes independently of the state it starts from ([C, BH, ...]).
    Several are kept transposed ("_t"): the products with the N x N state then run as
    [N, N] @ [N, L], which batched BLAS does faster than [L, N] @ [N, N]."""
    p_t: torch.Tensor         # U^T = S0 p_t + q_t   [N, L]
    q_t: torch.Tensor         # [N, L]
    kv: torch.Tensor          # V^T K_bar, [N, N]
    b_bar: torch.Tensor       # b_s e^{c_L - c_s}, [L, N]
    decay_end: torch.Tensor   # e^{c_L}, [1, N]
    r_dec: torch.Tensor       # r_t e^{c_t}, [L, N]
    m_rb: torch.Tensor        # [L, L]
    y_local_t: torch.Tensor   # (M_rk V)^T, [N, L]


def _chunk_locals(r, w, k, v, a, b) -> _ChunkLocals:
    """The state-independent part of every chunk at once; inputs [C, BH, L, N]."""
    L = r.shape[-2]
    c = torch.cumsum(w, dim=-2)                       # c_t
    c_prev = c - w                                    # c_{t-1}
    mid = c[..., L // 2 - 1: L // 2, :]               # reference point for the split exponentials
    c_end = c[..., -1:, :]                            # c_L
    # Three full-size exponentials; the other factors are per-chunk vectors (e^m, e^{c_L - m}).
    a_in = a * torch.exp(c_prev - mid)                # a_t e^{c_{t-1} - m}
    r_in = r * torch.exp(c - mid)                     # r_t e^{c_t - m}
    out_scale = torch.exp(mid - c)                    # e^{m - c_s}
    b_out, k_out = b * out_scale, k * out_scale
    exp_mid = torch.exp(mid)
    a_dec, r_dec = a_in * exp_mid, r_in * exp_mid     # what S0 sees: a_t e^{c_{t-1}}, r_t e^{c_t}
    end_scale = torch.exp(c_end - mid)
    b_bar, k_bar = b_out * end_scale, k_out * end_scale   # b_s e^{c_L - c_s}, k_s e^{c_L - c_s}

    strict = torch.ones(L, L, dtype=torch.bool, device=r.device).tril(-1)
    incl = torch.ones(L, L, dtype=torch.bool, device=r.device).tril()
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    b_out_t, k_out_t = b_out.transpose(-1, -2), k_out.transpose(-1, -2)
    m_ab = torch.where(strict, a_in @ b_out_t, zero)
    m_ak = torch.where(strict, a_in @ k_out_t, zero)
    m_rb = torch.where(incl, r_in @ b_out_t, zero)
    m_rk = torch.where(incl, r_in @ k_out_t, zero)

    inv_t = _unit_lower_inverse(m_ab).transpose(-1, -2)
    v_t = v.transpose(-1, -2)
    return _ChunkLocals(
        p_t=a_dec.transpose(-1, -2) @ inv_t,
        q_t=(v_t @ m_ak.transpose(-1, -2)) @ inv_t,
        kv=v_t @ k_bar,
        b_bar=b_bar,
        decay_end=torch.exp(c_end),
        r_dec=r_dec,
        m_rb=m_rb,
        y_local_t=v_t @ m_rk.transpose(-1, -2),
    )


def _carry_state(state, loc: _ChunkLocals):
    """The only sequential part: hand the state [BH, N, N] from chunk to chunk.
    Returns the states before every chunk and after the last [C + 1, BH, N, N], and
    U^T = [S_{t-1} a_t] as columns for every chunk [C, BH, N, L]."""
    C, BH, N, L = loc.p_t.shape
    states = state.new_empty(C + 1, BH, N, N)
    u_t = state.new_empty(C, BH, N, L)
    states[0] = state
    for i in range(C):
        torch.baddbmm(loc.q_t[i], states[i], loc.p_t[i], out=u_t[i])
        torch.baddbmm(torch.addcmul(loc.kv[i], states[i], loc.decay_end[i]),
                      u_t[i], loc.b_bar[i], out=states[i + 1])
    return states, u_t


def _bmm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x @ y over [C, BH, ...] with the two batch dimensions folded into one (no copies)."""
    result = torch.bmm(x.flatten(0, 1), y.flatten(0, 1))
    return result.view(*x.shape[:2], *result.shape[1:])


class _ChunkedWKV7(torch.autograd.Function):
    """Chunked WKV-7 on [C, BH, L, N] inputs with a hand-written backward for the state hand-over.
    Returns each chunk's output transposed, [C, BH, N, L], and the final state.

    Only the inputs and the chunk-start states are kept for backward (autograd through every
    intermediate kept about 3.5x more); backward recomputes the state-independent part under
    autograd and walks the chunks in reverse for the rest.
    """

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, state):
        loc = _chunk_locals(r, w, k, v, a, b)
        states, u_t = _carry_state(state, loc)
        starts = states[:-1]
        # Y^T = S0 R_dec^T + U^T M_rb^T + (M_rk V)^T
        y_t = loc.y_local_t + _bmm(starts, loc.r_dec.transpose(-1, -2))
        y_t += _bmm(u_t, loc.m_rb.transpose(-1, -2))
        ctx.save_for_backward(r, w, k, v, a, b, starts)
        return y_t, states[-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy_t, d_final):
        *inputs, starts = ctx.saved_tensors
        inputs = [x.detach().requires_grad_() for x in inputs]
        with torch.enable_grad():
            loc = _chunk_locals(*inputs)
        p_t, q_t, b_bar, decay_end, r_dec, m_rb = (
            t.detach() for t in (loc.p_t, loc.q_t, loc.b_bar, loc.decay_end, loc.r_dec, loc.m_rb))
        u_t = _bmm(starts, p_t) + q_t                      # recomputed: cheaper than keeping it
        dy_t = dy_t.contiguous()
        starts_t = starts.transpose(-1, -2)

        # Reverse walk; g[i] is the gradient reaching the state before chunk i. Inside chunk i
        #   U^T = S p_t + q_t,  S' = S diag(d) + kv + U^T b_bar,  Y^T = S r_dec^T + U^T m_rb^T + ...
        C, BH, N, L = p_t.shape
        du_t = _bmm(dy_t, m_rb)                            # the part from Y; the loop adds the rest
        ds_from_y = _bmm(dy_t, r_dec)
        g = starts.new_empty(C + 1, BH, N, N)
        g[C] = d_final
        for i in reversed(range(C)):
            du_t[i].baddbmm_(g[i + 1], b_bar[i].transpose(-1, -2))
            torch.baddbmm(torch.addcmul(ds_from_y[i], g[i + 1], decay_end[i]),
                          du_t[i], p_t[i].transpose(-1, -2), out=g[i])
        g_after = g[1:]

        grads_of_locals = _ChunkLocals(
            p_t=_bmm(starts_t, du_t),
            q_t=du_t,
            kv=g_after,
            b_bar=_bmm(g_after.transpose(-1, -2), u_t).transpose(-1, -2),
            decay_end=(g_after * starts).sum(dim=-2, keepdim=True),
            r_dec=_bmm(starts_t, dy_t).transpose(-1, -2),
            m_rb=_bmm(dy_t.transpose(-1, -2), u_t),
            y_local_t=dy_t,
        )
        wanted = [x for x, need in zip(inputs, ctx.needs_input_grad) if need]
        found = iter(torch.autograd.grad(loc, wanted, grads_of_locals) if wanted else ())
        grads = [next(found) if need else None for need in ctx.needs_input_grad[:6]]
        return (*grads, g[0] if ctx.needs_input_grad[6] else None)


def wkv7_chunked(r, w, k, v, a, b, state=None, chunk: int = CHUNK):
    """WKV-7 in chunked form (see the module docstring); same contract as `wkv7_reference`.
    `chunk` (a power of two >= 2) trades the sequential loop's length against per-chunk work."""
    B, T, H, N = r.shape
    if any(x.shape != r.shape for x in (w, k, v, a, b)):
        raise ValueError(f"r, w, k, v, a, b must share one shape [B,T,H,N]; got "
                         f"{[tuple(x.shape) for x in (r, w, k, v, a, b)]}")
    if chunk < 2 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two >= 2, not {chunk}")
    out_dtype, dt = r.dtype, _state_dtype(r)
    S = torch.zeros(B, H, N, N, dtype=dt, device=r.device) if state is None else state.to(dt)
    if T == 0:
        return r.new_zeros(B, 0, H, N), S if state is None else S.clone()
    T_pad = -(-T // chunk) * chunk
    # Padding tokens have w = 0 (decay 1) and zero r, k, v, a, b: they leave the state untouched.
    chunked = (_to_chunks(x, T_pad, chunk, dt) for x in (r, w, k, v, a, b))
    y_t, S = _ChunkedWKV7.apply(*chunked, S.reshape(B * H, N, N))
    return _from_chunks_transposed(y_t, B, T, H).to(out_dtype), S.view(B, H, N, N)


def register_backend(device_type: str, fn: Backend) -> None:
    """Use `fn(r, w, k, v, a, b, state)` for tensors on `device_type` (e.g. "cuda")."""
    _BACKENDS[device_type] = fn
    _FAILED.discard(device_type)


def _cpu_kernel(r, w, k, v, a, b, state):
    """The C++ loop of core/network/cpu_kernels.cpp where it applies (CPU, float32, built), else None."""
    if r.device.type != "cpu" or not all(t.dtype == torch.float32 for t in (r, w, k, v, a, b, state)
                                          if t is not None):
        return None
    return cpu_kernels.load_extension()


def wkv7(r, w, k, v, a, b, state=None, *, backend: str = "train"):
    """The WKV-7 operator, through the code that `backend` asks for on these tensors' device:

    - "train" (differentiable): a registered device kernel (CUDA) where there is one; on the CPU in
      float32 the C++ loop with its C++ backward; else the chunked form with its written backward.
    - "prefill" (forward only, for prefill and scoring): on the CPU in float32 the C++ loop (the
      chunked form if the kernels are unavailable), whose backward is an error rather than silently
      no gradient; elsewhere the same code as "train".

    A registered device kernel that raises is disabled for the rest of the process (with a warning)
    and the chunked path, which runs on any device, takes over.
    """
    if backend not in WKV_BACKENDS:
        raise ValueError(f"WKV backend must be one of {WKV_BACKENDS}, not {backend!r}")
    cpu = _cpu_kernel(r, w, k, v, a, b, state)
    if cpu is not None and backend == "prefill":
        return _ForwardOnlyWKV7.apply(cpu, r, w, k, v, a, b, state)
    if cpu is not None and r.shape[-1] % cpu.WKV_LANES == 0:
        return _CpuWKV7.apply(cpu, r, w, k, v, a, b, state)
    device_type = r.device.type
    kernel = _BACKENDS.get(device_type)
    if kernel is not None and device_type not in _FAILED:
        try:
            return kernel(r, w, k, v, a, b, state)
        except Exception as exc:  # a broken kernel must not stop training or playback
            _FAILED.add(device_type)
            log.warning("WKV-7 %s kernel failed (%s); using the chunked path", device_type, exc)
    return wkv7_chunked(r, w, k, v, a, b, state)


def _state_arg(state, r):
    return state if state is not None else r.new_empty(0)


class _ForwardOnlyWKV7(torch.autograd.Function):
    """The C++ forward-only loop; a backward through it is an error that names the fix."""

    @staticmethod
    def forward(ctx, kernel, r, w, k, v, a, b, state):
        y, final, _ = kernel.wkv_forward(r, w, k, v, a, b, _state_arg(state, r), 0)
        return y, final

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("the 'prefill' WKV backend is forward only: for gradients use backend='train' "
                           "(model.train(), or model(idx, backend='train'))")


class _CpuWKV7(torch.autograd.Function):
    """The C++ loop for training on the CPU: the forward keeps the state every KEEP_EVERY tokens, the
    backward recomputes each such stretch from it and walks it in reverse (cpu_kernels.cpp). It does
    no chunk algebra (bench/bench_wkv.py compares the two)."""
    KEEP_EVERY = 16

    @staticmethod
    def forward(ctx, kernel, r, w, k, v, a, b, state):
        keep = _CpuWKV7.KEEP_EVERY if any(ctx.needs_input_grad) else 0
        y, final, kept = kernel.wkv_forward(r, w, k, v, a, b, _state_arg(state, r), keep)
        ctx.kernel, ctx.state_shape = kernel, None if state is None else state.shape
        ctx.save_for_backward(r, w, k, v, a, b, kept)
        return y, final

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, d_final):
        r, w, k, v, a, b, kept = ctx.saved_tensors
        d_final = d_final if d_final is not None else r.new_empty(0)
        *grads, d_state = ctx.kernel.wkv_backward(r, w, k, v, a, b, kept, dy, d_final, _CpuWKV7.KEEP_EVERY)
        needs = ctx.needs_input_grad
        grads = [g if need else None for g, need in zip(grads, needs[1:7])]
        d_state = d_state.view(ctx.state_shape) if ctx.state_shape is not None and needs[7] else None
        return (None, *grads, d_state)



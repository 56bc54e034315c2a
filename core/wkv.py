"""The WKV-7 operator: S_t = S_{t-1} diag(exp(w_t)) + (S_{t-1} a_t) b_t^T + v_t k_t^T,  y_t = S_t r_t.

Shapes: r, w, k, v, a, b are [B, T, H, N]; `w` is the LOG of the decay (<= 0). The state S is
[B, H, N, N] indexed S[b, h, value_i, key_j], kept in float32 (float64 when the inputs are float64).
RWKV-7 calls it with a = -kk and b = kk * a_rate.

One entry point, `wkv7`, picks the backend; every backend returns (y [B,T,H,N] in the input dtype,
final state) and gives gradients for every input, the initial state included.

Backends:
- `wkv7_reference`: the plain sequential recurrence (ground truth for tests).
- `wkv7_chunked`: the fast path for the CPU (and any device without a registered kernel). It splits T
  into chunks of CHUNK tokens; everything inside a chunk is batched matmuls over all chunks at once, and
  only a short loop of small matmuls carries the state from chunk to chunk. Its backward is written
  out (the reverse walk over chunks) and keeps only the inputs and the chunk-start states.
- Device kernels (e.g. the CUDA one in core/cuda/) plug in with `register_backend("cuda", fn)`.

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

log = logging.getLogger(__name__)

CHUNK = 16  # tokens per chunk; a power of two (the triangular inverse below doubles powers)

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
    """[B, T, H, N] -> [B*H, n_chunks, L, N] in dtype dt, zero-padded at the end to T_pad tokens."""
    B, T, H, N = x.shape
    x = x.to(dt)
    if T_pad != T:
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, T_pad - T))
    return x.view(B, T_pad // L, L, H, N).permute(0, 3, 1, 2, 4).reshape(B * H, T_pad // L, L, N)


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
    """What each chunk contributes independently of the state it starts from ([BH, C, ...])."""
    p: torch.Tensor           # U = p S0^T + q   [L, N]
    q: torch.Tensor           # [L, N]
    kv: torch.Tensor          # V^T K_bar, [N, N]
    b_bar: torch.Tensor       # b_s e^{c_L - c_s}, [L, N]
    decay_end: torch.Tensor   # e^{c_L}, [N]
    r_dec: torch.Tensor       # r_t e^{c_t}, [L, N]
    m_rb: torch.Tensor        # [L, L]
    y_local: torch.Tensor     # M_rk V, [L, N]


def _chunk_locals(r, w, k, v, a, b) -> _ChunkLocals:
    """The state-independent part of every chunk at once; inputs [BH, C, L, N]."""
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
    bk_out = torch.cat([b_out, k_out], dim=-2).transpose(-1, -2)       # [N, 2L]
    m_a = torch.where(strict.repeat(1, 2), a_in @ bk_out, zero)        # [M_ab | M_ak]
    m_r = torch.where(incl.repeat(1, 2), r_in @ bk_out, zero)          # [M_rb | M_rk]

    inv = _unit_lower_inverse(m_a[..., :L])
    return _ChunkLocals(
        p=inv @ a_dec,
        q=inv @ (m_a[..., L:] @ v),
        kv=v.transpose(-1, -2) @ k_bar,
        b_bar=b_bar,
        decay_end=torch.exp(c_end).squeeze(-2),
        r_dec=r_dec,
        m_rb=m_r[..., :L],
        y_local=m_r[..., L:] @ v,
    )


def _carry_state(S, loc: _ChunkLocals):
    """The only sequential part: hand the state [BH, N, N] from chunk to chunk.
    Returns the state at each chunk's start [BH, C, N, N], U = [S_{t-1} a_t] [BH, C, L, N] and the
    final state."""
    starts, us = [], []
    for p_i, q_i, kv_i, b_i, decay_i in zip(loc.p.unbind(1), loc.q.unbind(1), loc.kv.unbind(1),
                                            loc.b_bar.unbind(1), loc.decay_end.unbind(1)):
        starts.append(S)
        u = torch.baddbmm(q_i, p_i, S.transpose(-1, -2))
        us.append(u)
        S = torch.baddbmm(S * decay_i[:, None, :] + kv_i, u.transpose(-1, -2), b_i)
    return torch.stack(starts, dim=1), torch.stack(us, dim=1), S


class _ChunkedWKV7(torch.autograd.Function):
    """Chunked WKV-7 on [BH, C, L, N] inputs with a hand-written backward for the state hand-over.

    Only the inputs and the chunk-start states are kept for backward (autograd through every
    intermediate kept about 6x the inputs); backward recomputes the state-independent part under
    autograd and walks the chunks in reverse for the rest.
    """

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, state):
        loc = _chunk_locals(r, w, k, v, a, b)
        starts, u, final = _carry_state(state, loc)
        y = loc.r_dec @ starts.transpose(-1, -2) + loc.m_rb @ u + loc.y_local
        ctx.save_for_backward(r, w, k, v, a, b, starts)
        return y, final

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, d_final):
        *inputs, starts = ctx.saved_tensors
        inputs = [x.detach().requires_grad_() for x in inputs]
        with torch.enable_grad():
            loc = _chunk_locals(*inputs)
        p, q, b_bar, decay_end, r_dec, m_rb = (
            t.detach() for t in (loc.p, loc.q, loc.b_bar, loc.decay_end, loc.r_dec, loc.m_rb))
        u = p @ starts.transpose(-1, -2) + q               # recomputed: cheaper than keeping it

        # Reverse walk. g is the gradient reaching the state after chunk i; inside chunk i
        #   u = p S^T + q,  S' = S diag(d) + kv + u^T b_bar,  y = r_dec S^T + m_rb u + y_local.
        du_from_y = m_rb.transpose(-1, -2) @ dy                   # [BH, C, L, N]
        ds_from_y = dy.transpose(-1, -2) @ r_dec                  # [BH, C, N, N]
        g = d_final
        g_after, du = [], []
        for i in reversed(range(starts.shape[1])):
            g_after.append(g)
            du_i = torch.baddbmm(du_from_y[:, i], b_bar[:, i], g.transpose(-1, -2))
            du.append(du_i)
            g = torch.baddbmm(g * decay_end[:, i, None, :] + ds_from_y[:, i],
                              du_i.transpose(-1, -2), p[:, i])
        g_after = torch.stack(g_after[::-1], dim=1)
        du = torch.stack(du[::-1], dim=1)

        grads_of_locals = _ChunkLocals(
            p=du @ starts,
            q=du,
            kv=g_after,
            b_bar=u @ g_after,
            decay_end=(g_after * starts).sum(dim=-2),
            r_dec=dy @ starts,
            m_rb=dy @ u.transpose(-1, -2),
            y_local=dy,
        )
        wanted = [x for x, need in zip(inputs, ctx.needs_input_grad) if need]
        found = iter(torch.autograd.grad(loc, wanted, grads_of_locals) if wanted else ())
        grads = [next(found) if need else None for need in ctx.needs_input_grad[:6]]
        return (*grads, g if ctx.needs_input_grad[6] else None)


def wkv7_chunked(r, w, k, v, a, b, state=None, chunk: int = CHUNK):
    """WKV-7 in chunked form (see the module docstring); same contract as `wkv7_reference`."""
    B, T, H, N = r.shape
    out_dtype, dt = r.dtype, _state_dtype(r)
    S = torch.zeros(B, H, N, N, dtype=dt, device=r.device) if state is None else state.to(dt)
    if T == 0:
        return r.new_zeros(B, 0, H, N), S if state is None else S.clone()
    n_chunks = -(-T // chunk)
    T_pad = n_chunks * chunk
    # Padding tokens have w = 0 (decay 1) and zero r, k, v, a, b: they leave the state untouched.
    chunked = (_to_chunks(x, T_pad, chunk, dt) for x in (r, w, k, v, a, b))
    y, S = _ChunkedWKV7.apply(*chunked, S.reshape(B * H, N, N))
    y = y.view(B, H, T_pad, N)[:, :, :T].permute(0, 2, 1, 3).to(out_dtype)
    return y, S.view(B, H, N, N)


def register_backend(device_type: str, fn: Backend) -> None:
    """Use `fn(r, w, k, v, a, b, state)` for tensors on `device_type` (e.g. "cuda")."""
    _BACKENDS[device_type] = fn
    _FAILED.discard(device_type)


def wkv7(r, w, k, v, a, b, state=None):
    """The WKV-7 operator through the best backend available for these tensors.

    A registered device kernel is tried first; if it raises, it is disabled for the rest of the
    process (with a warning) and the chunked path, which runs on any device, takes over.
    """
    device_type = r.device.type
    kernel = _BACKENDS.get(device_type)
    if kernel is not None and device_type not in _FAILED:
        try:
            return kernel(r, w, k, v, a, b, state)
        except Exception as exc:  # a broken kernel must not stop training or playback
            _FAILED.add(device_type)
            log.warning("WKV-7 %s kernel failed (%s); using the chunked path", device_type, exc)
    return wkv7_chunked(r, w, k, v, a, b, state)


def _cuda_kernel(r, w, k, v, a, b, state=None):
    """The CUDA kernel of core/cuda (built with ninja on first use). It returns None for what it
    declines (float64, head size != 64, a failed build: it warns once) -> the chunked path."""
    from core.cuda import wkv7_cuda
    out = wkv7_cuda(r, w, k, v, a, b, state)
    return out if out is not None else wkv7_chunked(r, w, k, v, a, b, state)


register_backend("cuda", _cuda_kernel)

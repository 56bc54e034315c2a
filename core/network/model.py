"""The RWKV-7 ("x070") network: parameters, from-scratch initialisation and the parallel forward.

Parameter names are the checkpoint names (`blocks.0.att.receptance.weight`, ...), so `state_dict()` is
the layout the RWKV tools read (the files: core/network/checkpoint.py). Per layer, with x the ln1 output and x'
the previous token's (zero, or the carried state, before the first token):

    x_m = lerp(x, x', mu_m) for m in r, w, k, v, a, g;   r, k, v = W_r x_r, W_k x_k, W_v x_v
    decay = exp(-e^-0.5 * sigmoid(w0 + tanh(x_w W1) W2))           (low-rank; computed in >= fp32)
    a = sigmoid(a0 + x_a A1 A2);   g = sigmoid(x_g G1) G2
    v = lerp(v, v_first, sigmoid(v0 + x_v V1 V2))    (layer 0: v_first = v, the value residual)
    kk = normalise_per_head(k * k_k);   k = k * (1 + (a - 1) * k_a)
    S_t = S_{t-1} diag(decay_t) - (S_{t-1} kk_t)(kk_t * a_t)^T + v_t k_t^T;   y_t = S_t r_t  (core/network/wkv.py)
    out = W_o ((GroupNorm_H(y) + (sum_per_head r * k * r_k) v) * g)
and the channel mix relu(W_k lerp(x, x', mu_k))^2 through W_v (optionally gated per token by
DeepEmbed). Around the blocks: ln0 on the embedding, x += time mix(ln1 x), x += channel mix(ln2 x),
logits = head(ln_out x). A style (core/network/style.py) may add a state offset dS, read as S_t + dS: it is an
argument (`offset=`) of `forward` and `prefill` (and of core.network.step's step), never state of the network; its
learned initial state is an ordinary `state` (`init_state(wkv=)`). core.network.style.StyledModel passes both.

Which code runs is chosen by an explicit `backend` argument (`forward(..., backend=)`, default by the
module's train()/eval() mode; `core.network.step.step_tokens(model, ..., backend=)`):

| use                          | backend        | CPU, float32                      | CPU, other dtypes | CUDA                 |
|------------------------------|----------------|-----------------------------------|-------------------|----------------------|
| training (autograd)          | "train"        | C++ WKV loop with a C++ backward  | chunked WKV       | WKV CUDA kernel      |
| prefill, scoring             | "prefill"      | C++ forward-only WKV              | chunked WKV       | WKV CUDA kernel      |
| one-token step (live)        | "step-cpp"     | fused C++ step (not DeepEmbed)    | torch-op step     | torch-op step        |
| one-token step, for checking | "step-torch"   | torch-op step                     | torch-op step     | torch-op step        |

The WKV choice is made in core.network.wkv.wkv7, the step's in core.network.step.prepare; the C++ kernels are in
core/network/cpu_kernels.cpp, the CUDA one in core/network/cuda/. Where a kernel declines the tensors (the CUDA one:
float64, a head size other than 64, or a failed self-test on the device; the C++ training loop: a head
size not a multiple of 8, which the C++ forward-only loop takes) or its build fails (one warning), the
chunked WKV or the torch-op step runs. `prefill` and `step` give the logits of `forward` (up to rounding).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import core.network.cuda  # noqa: F401  (registers the CUDA WKV kernel with core.network.wkv)
from core.network.wkv import WKV_BACKENDS, wkv7

# decay = exp(-DECAY_SCALE * sigmoid(z)). The `rwkv` package (the oracle) uses this rounded
# value of exp(-0.5); using the same constant keeps logits identical, not merely close.
DECAY_SCALE = 0.606531
GROUP_NORM_EPS = 64e-5
DEEP_EMBED_RANK = 32  # DeepEmbed's per-token matrix is 32 x 32 (s_emb rows are 1024 wide)

# Layer 0's value-residual weights: released RWKV-7 files have them, the maths never reads them.
UNUSED_PARAMETERS = frozenset({"blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"})


def _lora_dim(n_embd: int, factor: float, power: float) -> int:
    """RWKV-LM's suggested low-rank size: factor * C^power rounded to a multiple of 32."""
    return max(32, int(round(factor * n_embd ** power / 32)) * 32)


@dataclass
class ModelConfig:
    n_layer: int
    n_embd: int
    vocab_size: int
    head_size: int = 64
    dim_w: int = 0  # 0 = RWKV-LM's default for n_embd
    dim_a: int = 0
    dim_v: int = 0
    dim_g: int = 0
    deep_embed: bool = False

    def __post_init__(self):
        if self.n_embd % self.head_size:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of head_size {self.head_size}")
        c = self.n_embd
        self.dim_w = self.dim_w or _lora_dim(c, 1.8, 0.5)
        self.dim_a = self.dim_a or _lora_dim(c, 1.8, 0.5)
        self.dim_v = self.dim_v or _lora_dim(c, 1.3, 0.5)
        self.dim_g = self.dim_g or _lora_dim(c, 0.6, 0.8)

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --- recurrent state -------------------------------------------------------------------------
class State:
    """The recurrent state of B streams: per layer, the previous ln1 output (time-mix shift)
    [B,C], the WKV matrix [B,H,N,N] (float32, S[value, key]), the previous ln2 output [B,C].

    States made by `step`/`prefill` are inference tensors: fine for more steps, but to start a
    differentiable `forward` from one, `clone()` it outside inference mode first."""

    def __init__(self, att_x: list[torch.Tensor], wkv: list[torch.Tensor], ffn_x: list[torch.Tensor]):
        self.att_x, self.wkv, self.ffn_x = list(att_x), list(wkv), list(ffn_x)

    @property
    def batch_size(self) -> int:
        return self.att_x[0].shape[0]

    @property
    def n_layer(self) -> int:
        return len(self.att_x)

    def _map(self, fn) -> "State":
        return State([fn(t) for t in self.att_x], [fn(t) for t in self.wkv], [fn(t) for t in self.ffn_x])

    def clone(self) -> "State":
        return self._map(torch.clone)

    def detach(self) -> "State":
        return self._map(torch.Tensor.detach)

    def select(self, indices) -> "State":
        """The streams at `indices` (a list, range or long tensor), in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.att_x[0].device)
        return self._map(lambda t: t.index_select(0, idx))

    def repeat(self, k: int) -> "State":
        """Each stream repeated k times in a row: stream i becomes streams i*k .. i*k+k-1."""
        return self._map(lambda t: t.repeat_interleave(k, dim=0))

    def to(self, device=None, dtype=None) -> "State":
        """Move to a device; `dtype` applies to the shift vectors (WKV stays float32)."""
        return State([t.to(device=device, dtype=dtype) for t in self.att_x], [t.to(device=device) for t in self.wkv],
                     [t.to(device=device, dtype=dtype) for t in self.ffn_x])

    def wkv_stack(self) -> torch.Tensor:
        """The WKV matrices as one [L,B,H,N,N] tensor."""
        return torch.stack(self.wkv)

    @staticmethod
    def cat(states: Sequence["State"]) -> "State":
        """Streams of several states side by side (batch dimension)."""
        n = states[0].n_layer
        return State([torch.cat([s.att_x[i] for s in states]) for i in range(n)],
                     [torch.cat([s.wkv[i] for s in states]) for i in range(n)],
                     [torch.cat([s.ffn_x[i] for s in states]) for i in range(n)])


# --- the network -----------------------------------------------------------------------------
def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout whose mask comes from random bytes, four to each 32-bit draw: F.dropout draws a
    Bernoulli per element, which was 5% of a style step on the CPU. The rate is rounded to 1/256 (0.2
    drops 51/256); the draws come from torch's generator, so a resumed run repeats them."""
    cut = round(p * 256)
    if cut == 0:
        return x
    n = x.numel()
    words = torch.randint(-2**31, 2**31 - 1, ((n + 3) // 4,), dtype=torch.int32, device=x.device)
    keep = words.view(torch.uint8)[:n].view(x.shape) >= cut
    return x * (keep.to(x.dtype) * (256 / (256 - cut)))


def _token_shift(x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """x [B,T,C] -> the previous token's vector at each position (prev, or zeros, first)."""
    if prev is None:
        return F.pad(x, (0, 0, 1, -1))
    return torch.cat([prev.unsqueeze(1).to(x.dtype), x[:, :-1]], dim=1)


class TimeMix(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        c = cfg.n_embd

        def vec():
            return nn.Parameter(torch.zeros(1, 1, c))

        self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g = (vec() for _ in range(6))
        self.w0, self.a0, self.v0 = vec(), vec(), vec()
        self.w1, self.w2 = nn.Parameter(torch.zeros(c, cfg.dim_w)), nn.Parameter(torch.zeros(cfg.dim_w, c))
        self.a1, self.a2 = nn.Parameter(torch.zeros(c, cfg.dim_a)), nn.Parameter(torch.zeros(cfg.dim_a, c))
        # layer 0 keeps v0/v1/v2 (unused) because released RWKV-7 files have them
        self.v1, self.v2 = nn.Parameter(torch.zeros(c, cfg.dim_v)), nn.Parameter(torch.zeros(cfg.dim_v, c))
        self.g1, self.g2 = nn.Parameter(torch.zeros(c, cfg.dim_g)), nn.Parameter(torch.zeros(cfg.dim_g, c))
        self.k_k, self.k_a = vec(), vec()
        self.r_k = nn.Parameter(torch.zeros(cfg.n_head, cfg.head_size))
        self.receptance = nn.Linear(c, c, bias=False)
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)
        self.ln_x = nn.GroupNorm(cfg.n_head, c, eps=GROUP_NORM_EPS)

    def forward(self, x, v_first, prev_x, wkv_state, offset=None, backend: str = "train"):
        """x [B,T,C] (ln1 output) -> (out [B,T,C], v_first, last x [B,C], final WKV state).
        `offset` [H,N,N] (a style's state offset dS): the state is read as S_t + dS at every token.
        `backend` ("train" or "prefill") picks the WKV code (core.network.wkv.wkv7)."""
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        prev = _token_shift(x, prev_x)
        xr, xw, xk = torch.lerp(x, prev, self.x_r), torch.lerp(x, prev, self.x_w), torch.lerp(x, prev, self.x_k)
        xv, xa, xg = torch.lerp(x, prev, self.x_v), torch.lerp(x, prev, self.x_a), torch.lerp(x, prev, self.x_g)

        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        z = self.w0 + torch.tanh(xw @ self.w1) @ self.w2
        log_decay = -DECAY_SCALE * torch.sigmoid(z.to(torch.promote_types(z.dtype, torch.float32)))  # >= fp32
        if self.layer_id == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2

        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0, eps=1e-12)
        k = k * (1 + (a - 1) * self.k_a)
        heads = (B, T, H, N)
        y, wkv_state = wkv7(r.view(heads), log_decay.view(heads), k.view(heads), v.view(heads),
                            -kk, kk * a.view(heads), state=wkv_state, backend=backend)
        if offset is not None:  # r_t (S_t + dS) = r_t S_t + r_t dS: a linear term outside the recurrence
            y = y + torch.einsum("bthj,hij->bthi", r.view(heads), offset.to(y.dtype))
        y = self.ln_x(y.reshape(B * T, C)).view(heads)
        bonus = ((r * k).view(heads) * self.r_k).sum(dim=-1, keepdim=True)
        y = (y + bonus * v.view(heads)).view(B, T, C)
        return self.output(y * g), v_first, x[:, -1], wkv_state


class ChannelMix(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        c = cfg.n_embd
        self.x_k = nn.Parameter(torch.zeros(1, 1, c))
        self.key = nn.Linear(c, 4 * c, bias=False)
        self.value = nn.Linear(4 * c, c, bias=False)
        self.deep_embed = cfg.deep_embed
        if cfg.deep_embed:
            r = DEEP_EMBED_RANK
            self.s_emb = nn.Embedding(cfg.vocab_size, r * r)
            self.s_emb_x = nn.Linear(c, r * r, bias=False)
            self.s1 = nn.Parameter(torch.zeros(c, r))
            self.s2 = nn.Parameter(torch.zeros(r, 4 * c))
            self.s0 = nn.Parameter(torch.zeros(4 * c))

    def forward(self, x, prev_x, idx=None, x0=None):
        """x [B,T,C] (ln2 output) -> (out, last x). DeepEmbed needs the tokens and ln0(emb)."""
        h = torch.relu(self.key(torch.lerp(x, _token_shift(x, prev_x), self.x_k))).square()
        if self.deep_embed:
            r = DEEP_EMBED_RANK
            m = (self.s_emb(idx) + self.s_emb_x(x0)).unflatten(-1, (r, r))  # [B,T,32,32]
            ss = ((x @ self.s1).unsqueeze(-2) @ m).squeeze(-2)
            h = h * (ss @ self.s2 + self.s0)
        return self.value(h), x[:, -1]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        c = cfg.n_embd
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(c)
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.att = TimeMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg, layer_id)


class RWKV7(nn.Module):
    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        self.config = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_out = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.dropout = 0.0  # on each block's two outputs, in training passes only (set by the trainer)
        if init:  # skipped when a checkpoint will overwrite every weight anyway
            self.init_weights()

    # -- initialisation ------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self) -> None:
        """RWKV-LM's from-scratch recipe for x070 (see the notes)."""
        cfg = self.config
        C, V, L, N = cfg.n_embd, cfg.vocab_size, cfg.n_layer, cfg.head_size
        ramp = torch.arange(C, dtype=torch.float32) / C  # i / C
        linear = torch.arange(C, dtype=torch.float32) / (C - 1) - 0.5
        z = (torch.arange(C) % N - (N - 1) / 2) / ((N - 1) / 2)
        zigzag = (z * z.abs()).float()

        def ortho(w: torch.Tensor, scale: float) -> None:
            gain = math.sqrt(w.shape[0] / w.shape[1]) if w.shape[0] > w.shape[1] else 1.0
            nn.init.orthogonal_(w, gain=gain * scale)

        self.emb.weight.uniform_(-1e-4, 1e-4)
        nn.init.orthogonal_(self.head.weight, gain=0.5 * math.sqrt(V / C) if V > C else 0.5)
        for m in self.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.fill_(1.0)
                m.bias.zero_()
        for i, block in enumerate(self.blocks):
            att, ffn = block.att, block.ffn
            r01 = i / (L - 1) if L > 1 else 0.0
            r10 = 1.0 - i / L
            for mu, p in ((att.x_r, 0.2), (att.x_w, 0.9), (att.x_k, 0.7), (att.x_v, 0.7), (att.x_a, 0.9), (att.x_g, 0.2)):
                mu.copy_((1.0 - ramp ** (p * r10)).view(1, 1, C))
            ffn.x_k.copy_((1.0 - ramp ** (r10 ** 4)).view(1, 1, C))
            www = -6 + 6 * (torch.arange(C, dtype=torch.float32) / (C - 1)) ** (1 + r01 ** 0.3)
            att.w0.copy_((www + 0.5 + zigzag * 2.5).view(1, 1, C))
            att.a0.copy_((-0.19 + zigzag * 0.3 + linear * 0.4).view(1, 1, C))
            att.v0.copy_((0.73 - linear * 0.4).view(1, 1, C))
            att.k_k.copy_((0.71 - linear * 0.1).view(1, 1, C))
            att.k_a.fill_(1.02)
            att.r_k.fill_(-0.04)
            for down, up in ((att.w1, att.w2), (att.a1, att.a2), (att.v1, att.v2), (att.g1, att.g2)):
                down.zero_()
                ortho(up, 0.1)
            att.ln_x.weight.fill_(((i + 1) / L) ** 0.7)
            ortho(att.receptance.weight, 1.0)
            ortho(att.key.weight, 0.1)
            ortho(att.value.weight, 1.0)
            att.output.weight.zero_()
            ortho(ffn.key.weight, 1.0)
            ffn.value.weight.zero_()
            if cfg.deep_embed:  # starts as the identity gate (s2 = 0, s0 = 1)
                ffn.s_emb.weight.uniform_(-1e-4, 1e-4)
                ffn.s_emb_x.weight.zero_()
                ortho(ffn.s1, 0.1)
                ffn.s2.zero_()
                ffn.s0.fill_(1.0)

    # -- parallel form -------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, state: State | None = None, return_state: bool = False,
                backend: str | None = None, *, offset: torch.Tensor | None = None):
        """idx [B,T] long -> logits [B,T,V] (and the State after the last token if asked).

        `state` is the state before the first token; its WKV tensors may require grad (state
        tuning). Sequences in a batch never interact, so right-padding one leaves the others'
        logits unchanged (and its own logits up to its last real token); the returned state is
        the one after the last column, padding included. `backend`: see `forward_backend`.
        `offset` [L,H,N,N]: a style's state offset dS (may require grad: style training), read with
        the state at every token; None: the network alone."""
        x, new_state = self._hidden(idx, state, self.forward_backend(backend), offset)
        logits = self.head(self.ln_out(x))
        return (logits, new_state) if return_state else logits

    def forward_backend(self, backend: str | None = None) -> str:
        """Which code a parallel pass runs (the table above): "train" (differentiable) or "prefill"
        (forward only). None: the module's mode says it, "train" after model.train() and "prefill"
        after model.eval(), as a training loop and its validation set them."""
        if backend is None:
            return "train" if self.training else "prefill"
        if backend not in WKV_BACKENDS:
            raise ValueError(f"forward backend must be one of {WKV_BACKENDS}, not {backend!r}")
        return backend

    def _hidden(self, idx: torch.Tensor, state: State | None, backend: str, offset: torch.Tensor | None = None):
        drop = self.dropout if backend == "train" and self.training else 0.0
        x = self.blocks[0].ln0(self.emb(idx))
        x0 = x if self.config.deep_embed else None
        v_first = None
        att_x, wkv, ffn_x = [], [], []
        for i, block in enumerate(self.blocks):
            s_att = state.att_x[i] if state is not None else None
            s_wkv = state.wkv[i] if state is not None else None
            s_ffn = state.ffn_x[i] if state is not None else None
            out, v_first, last_att, last_wkv = block.att(block.ln1(x), v_first, s_att, s_wkv,
                                                         None if offset is None else offset[i], backend)
            x = x + (dropout(out, drop) if drop else out)
            out, last_ffn = block.ffn(block.ln2(x), s_ffn, idx, x0)
            x = x + (dropout(out, drop) if drop else out)
            att_x.append(last_att)
            wkv.append(last_wkv)
            ffn_x.append(last_ffn)
        return x, State(att_x, wkv, ffn_x)

    @torch.inference_mode()
    def prefill(self, idx: torch.Tensor, state: State | None = None, full_output: bool = False, *,
                offset: torch.Tensor | None = None):
        """Run a prompt [B,T] in parallel form -> (logits of the last token [B,V], or of every
        token [B,T,V] with full_output, State to continue with `step`). `offset`: as in `forward`."""
        x, new_state = self._hidden(idx, state, "prefill", offset)
        if not full_output:
            x = x[:, -1]
        return self.head(self.ln_out(x)), new_state

    # -- recurrent form ------------------------------------------------------------------------
    def init_state(self, batch_size: int = 1, wkv: torch.Tensor | None = None) -> State:
        """The zero state for `batch_size` streams; `wkv` [L,H,N,N] (a learned initial state) seeds
        every stream's WKV matrices (kept differentiable if it requires grad)."""
        cfg = self.config
        p = self.emb.weight
        B, C, H, N = batch_size, cfg.n_embd, cfg.n_head, cfg.head_size
        zeros = [torch.zeros(B, C, dtype=p.dtype, device=p.device) for _ in range(cfg.n_layer)]
        wkv_dtype = torch.float64 if p.dtype == torch.float64 else torch.float32  # as core.network.wkv keeps it
        if wkv is None:
            mats = [torch.zeros(B, H, N, N, dtype=wkv_dtype, device=p.device) for _ in range(cfg.n_layer)]
        else:
            if tuple(wkv.shape) != (cfg.n_layer, H, N, N):
                raise ValueError(f"WKV state shape {tuple(wkv.shape)} does not fit this model {(cfg.n_layer, H, N, N)}")
            mats = [wkv[i].to(device=p.device, dtype=wkv_dtype).unsqueeze(0).expand(B, H, N, N)
                    for i in range(cfg.n_layer)]
        return State(zeros, mats, [z.clone() for z in zeros])

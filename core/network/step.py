"""The one-token step: RWKV7 (core/network/model.py) run for one token of B independent streams, without
autograd, for live generation. Two steppers compute the network's function, one token at a time:

- CppStepper: the fused C++ step of core/network/cpu_kernels.cpp over one packed weight buffer. The torch-op
  step costs about 45 small ops a layer, each with its own dispatch overhead; at one token per call
  that overhead, not the arithmetic, sets the latency. The C++ step does a layer in a few loops that
  read every weight once. Float32 models on the CPU without DeepEmbed.
- TorchStepper: torch ops over weights rearranged into few, large ops (any device, any dtype).

`prepare(model, backend, offset=)` is where the choice is made: "step-cpp" takes the C++ step where it
applies (and builds), else the torch-op step; "step-torch" always takes the torch-op step. A style's state
offset dS [L,H,N,N] is an argument, packed with the weights (core.network.style.StyledModel passes its own). The
stepper is kept here for each model and made again when its weights change or another offset is given.
`step_tokens(model, tokens, state, offset=)` runs one.
"""
from __future__ import annotations

import math
import time
import weakref
from typing import Protocol

import torch
import torch.nn.functional as F

from core.network import cpu_kernels
from core.network.model import DECAY_SCALE, DEEP_EMBED_RANK, GROUP_NORM_EPS, RWKV7, State

STEP_BACKENDS = ("step-cpp", "step-torch")


class Stepper(Protocol):
    """One model's weights arranged for one-token steps (made by `prepare`)."""

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens [B] long -> (logits [B,V], the State after them); `state` is left unchanged."""
        ...


# model -> (what its weights and offset were, C++ or not, its stepper): the steppers belong here, not to
# the model
_STEPPERS: "weakref.WeakKeyDictionary[RWKV7, tuple]" = weakref.WeakKeyDictionary()


def prepare(model: RWKV7, backend: str = "step-cpp", offset: torch.Tensor | None = None) -> Stepper:
    """The stepper for `model`'s current weights and the state offset `offset` [L,H,N,N] (None: none; see
    the module docstring). Made again whenever a parameter changed in place (optimizer step,
    load_state_dict, an applied style: all bump its version counter), the model moved to another device or
    dtype, another backend is asked for, or another offset tensor is given. The offset is a value: give a
    new tensor for a new offset (one changed in place is not noticed)."""
    if backend not in STEP_BACKENDS:
        raise ValueError(f"step backend must be one of {STEP_BACKENDS}, not {backend!r}")
    cpp = backend == "step-cpp" and cpp_applies(model)
    cache = _STEPPERS.get(model)
    if cache is None or cache[0].changed(model, offset) or cache[1] != cpp:
        ext = cpu_kernels.load_extension() if cpp else None
        stepper = CppStepper(model, ext, offset) if ext is not None else TorchStepper(model, offset)
        cache = _STEPPERS[model] = (_WeightsWatch(model, offset), cpp, stepper)
    return cache[2]


def step_tokens(model: RWKV7, tokens: torch.Tensor, state: State, backend: str = "step-cpp", *,
                offset: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
    """One token for each of B streams: tokens [B] long -> (logits [B,V], new State), no autograd. The
    given state is left unchanged (branch from it freely). `backend`: see core/network/model.py's table; `offset`:
    a style's state offset dS [L,H,N,N] (see `prepare`)."""
    return prepare(model, backend, offset).step(tokens, state)


def cpp_applies(model: RWKV7) -> bool:
    """Whether the C++ step can run this model (float32 on the CPU, no DeepEmbed)."""
    p = model.emb.weight
    return p.device.type == "cpu" and p.dtype == torch.float32 and not model.config.deep_embed


class _WeightsWatch:
    """Notices that the step's weights changed since it was made: a parameter's version counter moved
    (in-place update), the weights moved to another device or dtype, or another state offset is given (a
    style's offset is part of the step's weights; held here, so its identity is never reused)."""

    def __init__(self, model: RWKV7, offset: torch.Tensor | None):
        self._params = list(model.parameters())
        self._versions = [p._version for p in self._params]
        self._where = (model.emb.weight.data_ptr(), model.emb.weight.dtype)
        self._offset = offset

    def changed(self, model: RWKV7, offset: torch.Tensor | None) -> bool:
        w = model.emb.weight
        return (offset is not self._offset or (w.data_ptr(), w.dtype) != self._where
                or any(p._version != v for p, v in zip(self._params, self._versions)))


# --- the C++ step ------------------------------------------------------------------------------
# The packed buffer's parts, per layer and then once; the same order as the enums in cpu_kernels.cpp.
LAYER_PARTS = ("ln1_w", "ln1_b", "mix", "rkv", "w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2",
               "w0", "a0", "v0", "k_k", "k_a", "r_k", "lnx_w", "lnx_b",
               "out", "ln2_w", "ln2_b", "ffn_mix", "ffn_key", "ffn_value", "ds")
GLOBAL_PARTS = ("emb", "ln_out_w", "ln_out_b", "head")


class CppStepper:
    """One model's weights packed for cpu_kernels.cpp's step; `step` runs B streams one token."""

    def __init__(self, model: RWKV7, extension, offset: torch.Tensor | None = None) -> None:
        self.ext = extension
        self.decay_scale, self.group_norm_eps = float(DECAY_SCALE), float(GROUP_NORM_EPS)
        cfg = model.config
        self.dims = [cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_size, cfg.vocab_size,
                     model.blocks[0].ffn.key.weight.shape[0], cfg.dim_w, cfg.dim_a, cfg.dim_v, cfg.dim_g,
                     int(offset is not None)]
        with torch.inference_mode():
            self.weights, self.offsets = self._pack(model, offset)

    @staticmethod
    def _parts(model: RWKV7, offset: torch.Tensor | None):
        """(name, tensor) in packing order, every matrix [out, in] as the C++ products read it; `offset`: a
        style's state offset [L,H,N,N] (None: an empty part)."""
        cfg = model.config
        b0 = model.blocks[0]
        for i, block in enumerate(model.blocks):
            att, ffn = block.att, block.ffn
            yield from {
                "ln1_w": block.ln1.weight, "ln1_b": block.ln1.bias,
                "mix": torch.stack([m.reshape(-1) for m in (att.x_r, att.x_k, att.x_v, att.x_w, att.x_a,
                                                            att.x_v, att.x_g)]),
                "rkv": torch.cat([att.receptance.weight, att.key.weight, att.value.weight]),
                "w1": att.w1.t(), "w2": att.w2.t(), "a1": att.a1.t(), "a2": att.a2.t(),
                "v1": att.v1.t(), "v2": att.v2.t(), "g1": att.g1.t(), "g2": att.g2.t(),
                "w0": att.w0, "a0": att.a0, "v0": att.v0, "k_k": att.k_k, "k_a": att.k_a, "r_k": att.r_k,
                "lnx_w": att.ln_x.weight, "lnx_b": att.ln_x.bias, "out": att.output.weight,
                "ln2_w": block.ln2.weight, "ln2_b": block.ln2.bias, "ffn_mix": ffn.x_k,
                "ffn_key": ffn.key.weight, "ffn_value": ffn.value.weight,
                "ds": offset[i] if offset is not None else att.w0.new_zeros(0),
            }.items()
        # ln0 is folded into the embedding table: a token's row is then ready to use
        yield "emb", F.layer_norm(model.emb.weight, (cfg.n_embd,), b0.ln0.weight, b0.ln0.bias)
        yield "ln_out_w", model.ln_out.weight
        yield "ln_out_b", model.ln_out.bias
        yield "head", model.head.weight

    def _pack(self, model: RWKV7, offset: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        names = [*LAYER_PARTS * model.config.n_layer, *GLOBAL_PARTS]
        pieces, offsets, at = [], [], 0
        for expected, (name, tensor) in zip(names, self._parts(model, offset), strict=True):
            assert name == expected, f"packing order: {name} where {expected} belongs"
            flat = tensor.detach().to(torch.float32).reshape(-1)
            pad = -at % 16  # 64-byte aligned rows start
            if pad:
                pieces.append(flat.new_zeros(pad))
                at += pad
            offsets.append(at)
            pieces.append(flat)
            at += flat.numel()
        return torch.cat(pieces).contiguous(), torch.tensor(offsets, dtype=torch.long)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, att, s, ffn = self.ext.step(tokens, self.weights, self.offsets, self.dims, self.decay_scale,
                                            self.group_norm_eps, state.att_x, state.wkv, state.ffn_x)
        return logits, State(list(att.unbind(0)), list(s.unbind(0)), list(ffn.unbind(0)))


# --- the torch-op step ---------------------------------------------------------------------------
# (in, out, batch, dtype) -> the fastest form of x @ W^T measured on this machine
_PRODUCT_FORM: dict[tuple, int] = {}


class _Product:
    """x [B,in] -> x @ W^T for a weight W [out,in], in whichever of three equal forms the BLAS
    runs fastest at this batch size: for one or a few rows MKL's kernels differ up to 4x between
    them depending on the shape. Measured once per (shape, batch size), on the real weights."""

    def __init__(self, weight: torch.Tensor):
        self.w = weight.detach().contiguous()  # [out, in]
        self.wt = self.w.t().contiguous()  # [in, out]
        self._form: dict[int, int] = {}  # batch size -> form

    def _run(self, form: int, x: torch.Tensor) -> torch.Tensor:
        if form == 0:
            return x @ self.wt
        if form == 1:
            return x @ self.w.t()
        y = (self.w @ x.t()).t()
        return y if x.shape[0] == 1 else y.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        form = self._form.get(x.shape[0])
        if form is None:
            form = self._form[x.shape[0]] = self._choose_form(x)
        return self._run(form, x)

    def _choose_form(self, x: torch.Tensor) -> int:
        if x.device.type != "cpu":
            return 1  # GPU BLAS has no such cliffs, and host timers cannot see its work
        key = (self.w.shape[1], self.w.shape[0], x.shape[0], x.dtype)
        if key not in _PRODUCT_FORM:
            _PRODUCT_FORM[key] = self._fastest_form(x)
        return _PRODUCT_FORM[key]

    def _fastest_form(self, x: torch.Tensor) -> int:
        best = {}
        for _ in range(3):  # interleaved rounds, best of each: robust to a busy machine
            for form in range(3):
                t0 = time.perf_counter()
                for _ in range(4):
                    self._run(form, x)
                best[form] = min(best.get(form, math.inf), time.perf_counter() - t0)
        return min(best, key=best.get)


class TorchStepper:
    """Weights rearranged for the one-token step (few, large torch ops: at one token per call
    the cost is per-op overhead plus streaming the weights once): the token-shift mixes as one
    [7,1,C] lerp weight, the four low-rank paths (w, a, v, g) as two batched matmuls,
    big matrices as _Product (fastest layout), ln0 folded into the embedding table; `offset`: a style's
    state offset [L,H,N,N] (None: none)."""

    def __init__(self, model: RWKV7, offset: torch.Tensor | None = None):
        with torch.inference_mode():
            self._build(model, offset)

    def _build(self, model: RWKV7, offset: torch.Tensor | None):
        cfg = model.config
        self.C, self.H, self.N = cfg.n_embd, cfg.n_head, cfg.head_size
        self.deep_embed = cfg.deep_embed
        b0 = model.blocks[0]
        emb = F.layer_norm(model.emb.weight, (self.C,), b0.ln0.weight, b0.ln0.bias)
        self.emb = emb.contiguous()
        self.ln_out = (model.ln_out.weight.detach(), model.ln_out.bias.detach())
        self.head = _Product(model.head.weight)
        self.layers = []
        for i, block in enumerate(model.blocks):
            att, ffn = block.att, block.ffn
            # the four low-rank paths (w, a, v gate, g), zero-padded to one rank: one bmm each way
            pairs = ((att.w1, att.w2), (att.a1, att.a2), (att.v1, att.v2), (att.g1, att.g2))
            rank = max(p1.shape[1] for p1, _ in pairs)
            down = torch.zeros(4, self.C, rank, dtype=att.w1.dtype, device=att.w1.device)
            up = torch.zeros(4, rank, self.C, dtype=att.w1.dtype, device=att.w1.device)
            for j, (p1, p2) in enumerate(pairs):
                down[j, :, : p1.shape[1]] = p1
                up[j, : p2.shape[0]] = p2
            zero = torch.zeros_like(att.w0.view(-1))
            lw = {
                "ln1": (block.ln1.weight.detach(), block.ln1.bias.detach()),
                "ln2": (block.ln2.weight.detach(), block.ln2.bias.detach()),
                # order: r, k, v | w, a, v (for the value-residual gate) | g
                "mix": torch.stack([m.view(-1) for m in (att.x_r, att.x_k, att.x_v, att.x_w, att.x_a, att.x_v,
                                                          att.x_g)]).unsqueeze(1),
                "r": _Product(att.receptance.weight), "k": _Product(att.key.weight), "v": _Product(att.value.weight),
                "down": down, "up": up,
                "bias": torch.stack([att.w0.view(-1), att.a0.view(-1), att.v0.view(-1), zero]).unsqueeze(1),
                "k_k": att.k_k.detach().view(1, self.H, self.N), "k_a": att.k_a.detach().view(-1),
                "one_minus_k_a": 1 - att.k_a.detach().view(-1),
                "r_k": att.r_k.detach(),
                "ln_x": (att.ln_x.weight.detach(), att.ln_x.bias.detach()),
                "out": _Product(att.output.weight),
                "ffn_mix": ffn.x_k.detach().view(-1),
                "ffn_key": _Product(ffn.key.weight),
                "ffn_value": _Product(ffn.value.weight),
                # a style's state offset dS [H,N,N], in the state's dtype (None: no offset)
                "ds": None if offset is None else offset[i].detach().to(
                    torch.float64 if att.w0.dtype == torch.float64 else torch.float32).contiguous(),
            }
            if cfg.deep_embed:
                lw["s_emb"] = (ffn.s_emb.weight + emb @ ffn.s_emb_x.weight.t()).contiguous()
                lw["s1"], lw["s2"], lw["s0"] = ffn.s1.detach(), ffn.s2.detach(), ffn.s0.detach()
            self.layers.append(lw)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        C, H, N = self.C, self.H, self.N
        B = tokens.shape[0]
        BH = B * H
        x = self.emb[tokens]
        v_first = None
        att_x, wkvs, ffn_x = [], [], []
        for i, lw in enumerate(self.layers):
            # time-mix
            xa = F.layer_norm(x, (C,), *lw["ln1"])
            mixed = torch.lerp(xa, state.att_x[i], lw["mix"])  # [7,B,C]: x + (prev - x) * mu
            r, k, v = lw["r"](mixed[0]), lw["k"](mixed[1]), lw["v"](mixed[2])
            low = torch.bmm(mixed[3:7], lw["down"])
            low[0].tanh_()
            low[3].sigmoid_()
            lora = torch.baddbmm(lw["bias"], low, lw["up"])
            sig = lora[:3].sigmoid_()  # decay, in-context rate, value gate
            g = lora[3]
            a = sig[1]
            if i == 0:
                v_first = v
            else:
                v = torch.lerp(v, v_first, sig[2])
            kk = k.view(B, H, N) * lw["k_k"]
            kk = kk / torch.linalg.vector_norm(kk, dim=-1, keepdim=True).clamp_min_(1e-12)
            k = k * torch.addcmul(lw["one_minus_k_a"], a, lw["k_a"])
            # S' = S diag(decay) - (S kk)(kk*a)^T + v k^T ;  y = S' r   (in the state's dtype;
            # the .to() calls cost nothing when the model is float32 too)
            S = state.wkv[i].reshape(BH, N, N)
            sd = S.dtype
            decay = torch.exp(sig[0].to(sd) * -DECAY_SCALE)
            s_kk = torch.bmm(S, kk.view(BH, N, 1).to(sd))
            S = S * decay.view(BH, 1, N)
            S.baddbmm_(s_kk, (kk * a.view(B, H, N)).view(BH, 1, N).to(sd), alpha=-1.0)
            S.baddbmm_(v.view(BH, N, 1).to(sd), k.view(BH, 1, N).to(sd))
            y = torch.bmm(S, r.view(BH, N, 1).to(sd))
            if lw["ds"] is not None:  # y = (S + dS) r
                y = y + torch.matmul(lw["ds"], r.view(B, H, N, 1).to(sd)).view(BH, N, 1)
            y = y.view(B, C).to(x.dtype)
            y = F.group_norm(y, H, *lw["ln_x"], eps=GROUP_NORM_EPS).view(B, H, N)
            bonus = torch.linalg.vecdot(r.view(B, H, N), k.view(B, H, N) * lw["r_k"]).unsqueeze(-1)
            y = torch.addcmul(y, bonus, v.view(B, H, N)).view(B, C)
            x = x + lw["out"](y * g)
            att_x.append(xa)
            wkvs.append(S.view(B, H, N, N))
            # channel-mix
            xf = F.layer_norm(x, (C,), *lw["ln2"])
            h = torch.relu_(lw["ffn_key"](torch.lerp(xf, state.ffn_x[i], lw["ffn_mix"]))).square_()
            if self.deep_embed:
                m = lw["s_emb"][tokens].view(B, DEEP_EMBED_RANK, DEEP_EMBED_RANK)
                ss = torch.bmm((xf @ lw["s1"]).unsqueeze(1), m).squeeze(1)
                h = h * torch.addmm(lw["s0"], ss, lw["s2"])
            x = x + lw["ffn_value"](h)
            ffn_x.append(xf)
        logits = self.head(F.layer_norm(x, (C,), *self.ln_out))
        return logits, State(att_x, wkvs, ffn_x)

"""CPU inference kernels in C++ (step_cpu.cpp, built just in time): the fused one-token step, fed one
packed weight buffer, and the forward-only WKV-7 recurrence that core/wkv.py uses for prefill.

The torch-op step costs about 45 small ops a layer, each with its own dispatch overhead: at one
token per call that overhead, not the arithmetic, sets the latency. The C++ step does a layer in
a few loops that read every weight once. It covers float32 models on the CPU without DeepEmbed;
anything else (or a failed build: one warning) keeps the torch-op step in core/model.py.

Build: `python -m core.step_cpu` (the Makefile runs it after installing), else on first use. It
is cached under ~/.cache/rwkv-music/cpu-step/<key>; RWKV_MUSIC_NO_CPU_STEP=1 turns it off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from core import jit_build

SOURCE = str(Path(__file__).resolve().with_name("step_cpu.cpp"))
DISABLE_ENV = "RWKV_MUSIC_NO_CPU_STEP"

# The packed buffer's parts, per layer and then once; the same order as the enums in step_cpu.cpp.
LAYER_PARTS = ("ln1_w", "ln1_b", "mix", "rkv", "w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2",
               "w0", "a0", "v0", "k_k", "k_a", "r_k", "lnx_w", "lnx_b",
               "out", "ln2_w", "ln2_b", "ffn_mix", "ffn_key", "ffn_value", "ds")
GLOBAL_PARTS = ("emb", "ln_out_w", "ln_out_b", "head")


def compiler_flags() -> list[str]:
    # OpenMP: without it at::parallel_for runs on one thread (its OpenMP path is inline in the
    # headers); on Linux the library then shares torch's libgomp.so.1 and thread count. Windows
    # (MSVC's own OpenMP runtime would be a second thread pool) and macOS (Apple's clang has no
    # OpenMP) build without it and step on one thread. AVX2 + FMA where this CPU has them (the
    # build is for this machine and the key includes the flags); the vector code falls back to
    # SSE2 pairs elsewhere.
    if sys.platform == "win32":
        return ["/O2"]
    flags = ["-O3"] if sys.platform == "darwin" else ["-O3", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def load_kwargs() -> dict:
    flags = compiler_flags()
    name, directory = jit_build.build_location("cpu-step", "rwkv_music_step_cpu", [SOURCE], flags)
    return dict(name=name, sources=[SOURCE], build_directory=directory, extra_cflags=flags, verbose=False)


def fallback_warning(why: str) -> str:
    return (f"fused CPU step unavailable ({why}); using the slower torch-op step. "
            f"Set {DISABLE_ENV}=1 to silence this.")


_builds = jit_build.ExtensionCache(fallback_warning)


def load_extension():
    """The compiled step (built on first use, then cached on disk), or None: turned off, or the
    build failed (one warning)."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    return _builds.get("cpu", lambda: jit_build.compile_extension(load_kwargs(), what="fused CPU step"))


def supports(model) -> bool:
    """Whether the fused step can run this model (float32 on the CPU, no DeepEmbed)."""
    p = model.emb.weight
    return p.device.type == "cpu" and p.dtype == torch.float32 and not model.config.deep_embed


class FusedStep:
    """One model's weights packed for step_cpu.cpp; `step` runs B streams one token."""

    def __init__(self, model, extension, decay_scale: float, group_norm_eps: float) -> None:
        self.ext = extension
        self.decay_scale, self.group_norm_eps = float(decay_scale), float(group_norm_eps)
        cfg = model.config
        self.dims = [cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_size, cfg.vocab_size,
                     model.blocks[0].ffn.key.weight.shape[0], cfg.dim_w, cfg.dim_a, cfg.dim_v, cfg.dim_g,
                     int(model.style_offset is not None)]
        with torch.inference_mode():
            self.weights, self.offsets = self._pack(model)

    @staticmethod
    def _parts(model):
        """(name, tensor) in packing order, every matrix [out, in] as the C++ products read it."""
        cfg = model.config
        b0 = model.blocks[0]
        offset = model.style_offset  # a style's state offset [L,H,N,N]; none: an empty part
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

    def _pack(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        names = [*LAYER_PARTS * model.config.n_layer, *GLOBAL_PARTS]
        pieces, offsets, at = [], [], 0
        for expected, (name, tensor) in zip(names, self._parts(model), strict=True):
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

    def step(self, tokens: torch.Tensor, att_x, wkv, ffn_x):
        """tokens [B] -> (logits [B,V], att_x, wkv, ffn_x as lists of per-layer tensors)."""
        logits, att, s, ffn = self.ext.step(tokens, self.weights, self.offsets, self.dims, self.decay_scale,
                                            self.group_norm_eps, att_x, wkv, ffn_x)
        return logits, list(att.unbind(0)), list(s.unbind(0)), list(ffn.unbind(0))


if __name__ == "__main__":  # build ahead of first use (the Makefile's install step)
    module = load_extension()
    print("fused CPU step:", "ready" if module is not None else "unavailable (see the warning above)")
    sys.exit(0)

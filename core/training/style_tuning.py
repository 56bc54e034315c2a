"""Learning a style: which parameters each part trains, the ranks that fit the file's bound, and StyleTuner,
the trainable module (a frozen base plus the parts at zero change) that the trainer optimises and exports as a
core.network.style.Style."""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from core.network import model as M
from core.network.checkpoint import model_fingerprint
from core.network.style import MAX_STYLE_BYTES, Style, StyleError

# The small always-applied parameters the "bias" part trains (layer 0's v0 is unused, k_k/k_a/r_k stay).
SMALL_PARAMS = re.compile(r"(^|\.)(ln0|ln1|ln2|ln_out|ln_x)\.(weight|bias)$"
                          r"|\.att\.(w0|a0|x_r|x_w|x_k|x_v|x_a|x_g)$|\.ffn\.x_k$")


# LoRA's matrices and the projections behind each token's decay, in-context learning rate, value residual and
# gate (w1 w2, a1 a2, v1 v2, g1 g2): how the model reads its context is part of a style (bench_style, 905 folk
# tunes, 800 steps: -18.6% bits/note at rank 12 against -18.1% at rank 16 on the large matrices only)
# (layer 0 has no value residual: its v1 v2 are unused)
STYLE_TARGETS = (r"blocks\.\d+\.(att\.(receptance|key|value|output)\.weight|att\.[wag][12]|(?<!blocks\.0\.)att\.v[12]"
                 r"|ffn\.(key|value)\.weight)$")


def small_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if SMALL_PARAMS.search(n) and n not in M.UNUSED_PARAMETERS]


def plan_style(model: M.RWKV7, parts: tuple[str, ...], lora_rank: int | None = None,
               offset_rank: int | None = None, max_bytes: int = MAX_STYLE_BYTES) -> tuple[int, int]:
    """(LoRA rank, offset rank; 0 = full) for a style of `parts` on `model` that fits `max_bytes`. Ranks
    given are kept (a StyleError if the file would not fit); unset ones take the largest that fits."""
    cfg = model.config
    targets = re.compile(STYLE_TARGETS)
    lora_numel = sum(p.shape[0] + p.shape[1] for n, p in model.named_parameters() if targets.search(n))
    n_lora = sum(1 for n, _ in model.named_parameters() if targets.search(n))
    small = sum(p.numel() for n, p in model.named_parameters() if n in set(small_parameter_names(model)))
    L, H, N = cfg.n_layer, cfg.n_head, cfg.head_size

    def size(lr: int, orank: int) -> int:
        elems16 = lora_numel * lr if "lora" in parts else 0  # fp16
        big = 0  # state and offset, counted at fp16 (what the writer falls back to)
        if "state" in parts:
            big += L * H * N * N
        if "offset" in parts:
            big += L * H * N * N if orank == 0 else 2 * L * H * N * orank
        tensors = (2 * n_lora if "lora" in parts else 0) + (len(small_parameter_names(model)) if "bias" in parts
                                                            else 0) + 3
        return 2 * (elems16 + big) + (4 * small if "bias" in parts else 0) + 700 * tensors + 8192

    # rank 16 against 8, 800 steps on 905 folk tunes: -17.9% bits/note against -17.1% (bench_style, r16); with
    # STYLE_TARGETS the bundled model's file fits rank 12
    lora_choices = [lora_rank] if lora_rank else [16, 12, 8, 6, 4, 2, 1]
    offset_choices = [offset_rank] if offset_rank is not None else [0, 32, 16, 8, 4, 2, 1]
    for orank in offset_choices:  # a full offset first, then the LoRA rank gives way before the offset's
        for lr in lora_choices:
            if size(lr, orank) <= max_bytes:
                return lr, orank
    raise StyleError(f"a style of {'+'.join(parts)} does not fit {max_bytes / 1e6:.2f} MB on this "
                     f"{cfg.n_layer}x{cfg.n_embd} model at these ranks: use lower ranks or fewer parts")


class StyleTuner(nn.Module):
    """A frozen base model plus the trainable parts of a style. Every part starts at zero change (LoRA's B,
    the offset's V or the whole offset, the initial state), so training starts from the base model."""

    def __init__(self, model: M.RWKV7, parts: tuple[str, ...], lora_rank: int = 8, offset_rank: int = 0,
                 base_fingerprint: str | None = None, lr_scale: dict[str, float] | None = None) -> None:
        super().__init__()
        self.model, self.parts = model, tuple(parts)
        from core.training.train_config import PART_LR_SCALE
        # each part's learning rate / the run's: a style's by default, the state mode passes its own
        self.lr_scale = dict(lr_scale or PART_LR_SCALE["style"])
        self.lora_rank, self.offset_rank = lora_rank, offset_rank
        self.base_fingerprint = base_fingerprint or model_fingerprint(model)
        cfg = model.config
        L, H, N = cfg.n_layer, cfg.n_head, cfg.head_size
        for p in model.parameters():
            p.requires_grad_(False)
        if "lora" in parts:
            from core.training.lora import apply_lora
            apply_lora(model, lora_rank, 2.0 * lora_rank, STYLE_TARGETS)  # scale 2, as the LoRA mode's 16/32
        self._small_base: dict[str, torch.Tensor] = {}
        if "bias" in parts:
            for name in small_parameter_names(model):
                p = model.get_parameter(name)
                self._small_base[name] = p.detach().clone()
                p.requires_grad_(True)
        if "state" in parts:
            self.wkv = nn.Parameter(torch.zeros(L, H, N, N))  # the name the "state" mode always had
        if "offset" in parts:
            if offset_rank:
                g = torch.Generator().manual_seed(0)
                self.offset_u = nn.Parameter(torch.randn(L, H, N, offset_rank, generator=g) / math.sqrt(N))
                self.offset_v = nn.Parameter(torch.zeros(L, H, offset_rank, N))
            else:
                self.offset = nn.Parameter(torch.zeros(L, H, N, N))

    def offset_matrix(self) -> torch.Tensor | None:
        if "offset" not in self.parts:
            return None
        return self.offset_u @ self.offset_v if self.offset_rank else self.offset

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        model = self.model
        state = model.init_state(idx.shape[0], wkv=self.wkv) if "state" in self.parts else None
        return model(idx, state=state, offset=self.offset_matrix())

    def optimizer_groups(self, peak_lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups, one per part, each at its own rate: `lr_scale` times the run's (`peak_lr` at the peak)."""
        from core.training.lora import lora_parameters
        named = {"lora": lora_parameters(self.model) if "lora" in self.parts else [],
                 "bias": [self.model.get_parameter(n) for n in self._small_base],
                 "offset": [p for n, p in self.named_parameters(recurse=False) if n.startswith("offset")],
                 "state": [self.wkv] if "state" in self.parts else []}
        groups = []
        for part in self.parts:
            params = named[part]
            if params:
                groups.append({"params": params, "weight_decay": weight_decay if part == "lora" else 0.0,
                               "lr": peak_lr * self.lr_scale[part], "lr_scale": self.lr_scale[part], "part": part})
        return groups

    @torch.no_grad()
    def export(self) -> Style:
        """The learnt style (CPU, float32; LoRA as (A, B * scale))."""
        from core.training.lora import LoRADelta
        style = Style(meta={"base_config": self.model.config.to_dict(), "base_fingerprint": self.base_fingerprint,
                            "lora_rank": self.lora_rank if "lora" in self.parts else None,
                            "offset_rank": self.offset_rank if "offset" in self.parts else None})
        if "state" in self.parts:
            style.state = self.wkv.detach().float().cpu().clone()
        if "offset" in self.parts:
            if self.offset_rank:
                style.offset_u = self.offset_u.detach().float().cpu().clone()
                style.offset_v = self.offset_v.detach().float().cpu().clone()
            else:
                style.offset = self.offset.detach().float().cpu().clone()
        for name, base in self._small_base.items():
            p = self.model.get_parameter(name).detach()
            style.deltas[name] = (p.float() - base.to(p.device).float()).cpu()
        for module_name, module in self.model.named_modules():
            if isinstance(module, LoRADelta):
                owner = module_name.split(".parametrizations.")[0]
                attr = module_name.split(".parametrizations.")[1].split(".")[0]
                style.lora[f"{owner}.{attr}"] = (module.A.detach().float().cpu().clone(),
                                                 (module.B.detach().float() * module.scale).cpu().clone())
        return style

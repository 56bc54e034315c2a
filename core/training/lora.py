"""Low-rank adapters on the large matrices of an RWKV-7 model, merged into plain weights on export.

An adapter is a torch parametrization: the weight the model reads is W + (alpha / rank) * B @ A with
W frozen, so the model's own forward code needs no change, and `merge_lora` leaves a model whose
state_dict has exactly the ecosystem's layout again. `LoRATuner` is the LoRA training mode's module.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn.utils import parametrize

# the CxC and Cx4C matrices that hold nearly all of a block's weights
DEFAULT_TARGETS = r"blocks\.\d+\.(att\.(receptance|key|value|output)|ffn\.(key|value))\.weight$"


class LoRADelta(nn.Module):
    """weight -> weight + scale * B @ A. B starts at zero, so training starts from the base model."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.B @ self.A).to(weight.dtype) * self.scale


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def apply_lora(model: nn.Module, rank: int = 16, alpha: float = 32.0,
               targets: str = DEFAULT_TARGETS) -> list[str]:
    """Freeze every parameter of `model` and add a trainable adapter to each 2-D parameter whose name
    matches `targets`. Returns the adapted names."""
    pattern = re.compile(targets)
    names = [n for n, p in model.named_parameters() if pattern.search(n) and p.dim() == 2]
    if not names:
        raise ValueError("no matrix in the model matches the LoRA targets")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        module, attr = _owner(model, name)
        weight = getattr(module, attr)
        delta = LoRADelta(weight.shape[0], weight.shape[1], rank, alpha).to(weight.device)
        parametrize.register_parametrization(module, attr, delta)
    return names


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, LoRADelta) for p in (m.A, m.B)]


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The plain state_dict of `model` with every adapter folded into its weight; `model` is left as it
    is and keeps training. (Not merge_lora on a deepcopy: the copy shares the injected Parametrized*
    class, and removing the parametrization deletes the weight property from that class, so the model
    being trained loses its weights.)"""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for attr in module.parametrizations.keys():
                sd[f"{module_name}.{attr}" if module_name else attr] = getattr(module, attr).detach().clone()
    return sd


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, in place; the model goes back to plain parameters."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model


class LoRATuner(nn.Module):
    """The LoRA mode's trainable module: the model with adapters on its large matrices, everything else frozen.
    Its state_dict keys ("model." + the model's) are those of the plain full-model wrapper's."""

    def __init__(self, model: nn.Module, rank: int = 16, alpha: float = 32.0, targets: str = DEFAULT_TARGETS) -> None:
        super().__init__()
        apply_lora(model, rank, alpha, targets)
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def optimizer_groups(self, peak_lr: float, weight_decay: float) -> list[dict]:
        """One AdamW group at the run's rate: the adapters' A and B, matrices all, so all decay like a full model's."""
        return [{"params": lora_parameters(self.model), "weight_decay": weight_decay, "lr": peak_lr, "lr_scale": 1.0}]

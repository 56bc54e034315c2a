"""What a training run trains and how its result is written.

The model: the base checkpoint (with the tokenizer it was trained with) or a fresh model of the asked size,
wrapped for the run's mode: `Plain` (pretraining, full fine-tune), core.training.lora.LoRATuner (LoRA) or a
core.training.style_tuning.StyleTuner (style and state tuning). Each wrapper gives its AdamW groups the same way,
`optimizer_groups(peak_lr, weight_decay)`, every group's rate a multiple (`lr_scale`) of the run's. The result:
model.pth (LoRA merged into the weights) or style.pth. The loop that trains it is core/training/train.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.network import model as M
from core.network.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint
from core.training.train_config import MODEL_FILE, PART_LR_SCALE, STYLE_FILE, TrainConfig, TrainingError


def _load_base(path: str):
    """(model, meta) of a base checkpoint; what goes wrong is a TrainingError of one line."""
    try:
        return load_checkpoint(path)
    except FileNotFoundError:
        raise TrainingError(f"base model not found: {path}") from None
    except CheckpointError as e:
        raise TrainingError(str(e)) from None


def build_model(config: TrainConfig, tokenizer):
    """(model, meta of the base or {}): the base checkpoint, or a fresh model of the given size."""
    if config.base:
        model, meta = _load_base(config.base)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise TrainingError(f"base model vocabulary ({model.config.vocab_size}) does not match the "
                                f"tokenizer ({tokenizer.vocab_size})")
        meta = {k: v for k, v in (meta or {}).items() if k not in ("format", "config")}
        return model.train(), meta
    if config.mode in ("state", "style"):
        raise TrainingError(f"{config.mode} tuning needs a base model (--base)")
    cfg = M.ModelConfig(n_layer=config.n_layer, n_embd=config.n_embd, vocab_size=tokenizer.vocab_size)
    return M.RWKV7(cfg), {}


def style_parts(config: TrainConfig) -> tuple[str, ...]:
    """The parts of the style a style/state run learns."""
    from core.network.style import parse_parts
    if config.mode == "state":
        return ("state",)
    try:
        return parse_parts(config.style_parts)
    except ValueError as e:
        raise TrainingError(str(e)) from None


def base_tokenizer(path: str):
    """The tokenizer a base checkpoint was trained with (the current one for files without metadata)."""
    from core.tokenizer import Tokenizer
    try:
        meta = read_checkpoint_meta(path)
        return Tokenizer.from_dict(meta["tokenizer"]) if "tokenizer" in meta else Tokenizer()
    except FileNotFoundError:
        raise TrainingError(f"base model not found: {path}") from None
    except (CheckpointError, ValueError) as e:
        raise TrainingError(str(e)) from None


class Plain(nn.Module):
    """The model as it is, every weight trained (pretraining, full fine-tune): one wrapper type for DDP."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def optimizer_groups(self, peak_lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups of the trainable parameters at the run's rate: weight decay on matrices only."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (decay if p.dim() == 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return [{**g, "lr": peak_lr, "lr_scale": 1.0} for g in groups if g["params"]]


def wrap(model: nn.Module, config: TrainConfig) -> nn.Module:
    """The module the run trains: a StyleTuner (style, state), a LoRATuner (lora) or Plain."""
    # layer 0's value-residual weights exist in the file layout but are never used: keep them out of
    # the optimizer (and out of DDP's gradient bookkeeping)
    for name in sorted(M.UNUSED_PARAMETERS):
        model.get_parameter(name).requires_grad_(False)
    dropout = config.resolved("dropout")
    if not 0.0 <= dropout < 1.0:
        raise TrainingError(f"dropout must be at least 0 and below 1, not {dropout:g}")
    model.dropout = dropout
    if config.mode in ("state", "style"):
        from core.network.style import StyleError
        from core.training.style_tuning import StyleTuner, plan_style
        parts = style_parts(config)
        try:
            lora_rank, offset_rank = plan_style(model, parts, config.style_rank, config.offset_rank)
        except StyleError as e:
            raise TrainingError(str(e)) from None
        return StyleTuner(model, parts, lora_rank, offset_rank, lr_scale=PART_LR_SCALE[config.mode])
    if config.mode == "lora":
        from core.training.lora import LoRATuner
        return LoRATuner(model, config.lora_rank, config.lora_alpha)
    return Plain(model)


def export_result(module: nn.Module, config: TrainConfig, out: Path, meta: dict,
                  memory_pieces: list | None = None) -> Path:
    """Write the usable result (model.pth or style.pth) atomically; returns its path. A style also
    carries the folder's memory (`memory_pieces`: the token ids of every piece)."""
    # both writers are atomic (temp file + os.replace)
    if config.mode in ("state", "style"):
        from core.network.style import save_style
        path = out / STYLE_FILE
        base = (meta.get("training") or {}).get("base")
        style = module.export()
        style.memory_pieces = list(memory_pieces or [])
        save_style(str(path), style, None, {**meta, "name": Path(config.out).name,
                                            "base_name": Path(base).name if base else None},
                   base_fingerprint=module.base_fingerprint)
    else:
        model = module.model
        if config.mode == "lora":
            from core.training.lora import merged_state_dict
            with torch.device("meta"):  # shapes only: the merged tensors become the parameters
                plain = M.RWKV7(model.config, init=False)
            plain.load_state_dict(merged_state_dict(model), assign=True)
            model = plain
        path = out / MODEL_FILE
        save_checkpoint(model, str(path), meta)
    return path


def write_memory_style(config: TrainConfig, pieces: list, tokenizer) -> Path:
    # pieces: the token ids of every piece
    """A style file that holds only the folder's memory (every piece's tokens), for `config.base`: the
    result of --mode memory, and the first result of a style run while its adapters train."""
    from core.network.style import Style, save_style
    if not config.base:
        raise TrainingError("a folder memory belongs to a base model: give --base")
    base, _ = _load_base(config.base)
    out = Path(config.out)
    path = out / STYLE_FILE
    style = Style(memory_pieces=[np.asarray(p, dtype=np.int64) for p in pieces])
    save_style(str(path), style, base, {"name": out.name, "base_name": Path(config.base).name,
                                        "tokenizer": tokenizer.to_dict(),
                                        "training": {"mode": "memory", "base": config.base, "data": str(config.data)}})
    return path

"""The options of a training run, shared by `rwkv-music train` and `python -m core.training.train` (torchrun), and
the TrainConfig they make. Their defaults are TrainConfig's (core/training/train_config.py), read from there.
Kept apart from core/training/train.py so that building the CLI parser does not import torch."""
from __future__ import annotations

import argparse
import dataclasses

from core.training.train_config import DEFAULT_DROPOUT, MODE_DEFAULTS, MODES, STYLE_LARGE_FOLDER, TrainConfig

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
# each option's TrainConfig field (--no-dynamics-flag and --keep-last, the negated options, are handled apart)
_FIELD_OF = {"folder": "data", "out": "out", "base": "base", "mode": "mode", "steps": "steps", "epochs": "epochs",
             "ctx": "ctx_len", "bptt": "bptt", "batch": "batch_size", "resume": "resume", "layers": "n_layer",
             "width": "n_embd",
             "lr": "lr", "seed": "seed", "eval_every": "eval_every", "checkpoint_every": "checkpoint_every",
             "val_fraction": "val_fraction", "warmup": "warmup_steps", "augment": "augment",
             "completion_only": "completion_only", "device": "device", "stop_at": "stop_at_step",
             "threads": "threads", "log_every": "log_every", "time_budget": "time_budget_s", "cache_dir": "cache_dir",
             "style_parts": "style_parts", "style_rank": "style_rank", "offset_rank": "offset_rank",
             "infill_share": "infill_share", "memory_loss": "memory_loss", "part_share": "part_share", "dropout": "dropout",
             "key_augment": "key_augment", "crop_share": "crop_share", "average_from": "average_from"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def parse_duration(text: str) -> float:
    """Seconds of "90", "90s", "10m" or "1.5h"."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a time like 90s, 10m or 1.5h, got {text!r}")
    return value


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The data, where the result goes, what it starts from, the mode and the run's length and windows."""
    p.add_argument("folder")
    p.add_argument("--out", required=True)
    p.add_argument("--base")
    p.add_argument("--mode", choices=MODES, default=_DEFAULTS["mode"],
                   help="full: every weight; lora: adapters merged into a new model; style: a small style.pth for "
                        "the base model (--style-parts); state: a style of only a learned initial state")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int)
    g.add_argument("--epochs", type=float)
    p.add_argument("--ctx", type=int, default=_DEFAULTS["ctx_len"])
    p.add_argument("--bptt", type=_positive_int, metavar="TOKENS",
                   help="run each window (--ctx tokens, e.g. a whole song) in spans of this many tokens with the "
                        "state carried from span to span and backpropagation cut between them (a multiple of 16; "
                        "full and LoRA modes, one process)")
    p.add_argument("--batch", type=int, default=_DEFAULTS["batch_size"])
    p.add_argument("--resume", action="store_true")


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The size of a model pretrained from scratch (no --base)."""
    p.add_argument("--layers", type=int, default=_DEFAULTS["n_layer"], help="model depth when pretraining (no --base)")
    p.add_argument("--width", type=int, default=_DEFAULTS["n_embd"], help="model width when pretraining (no --base)")


def _add_schedule_arguments(p: argparse.ArgumentParser) -> None:
    """Learning rate, seed, validation and the weights kept, checkpoints, augmentation, device, logging, the time
    budget and the token cache."""
    p.add_argument("--lr", type=float, help="peak learning rate (default by mode; a style from a folder of "
                   f"{STYLE_LARGE_FOLDER[0]:,} tokens or more learns {STYLE_LARGE_FOLDER[1]:g}x faster)")
    p.add_argument("--seed", type=int, default=_DEFAULTS["seed"])
    p.add_argument("--eval-every", type=int, default=_DEFAULTS["eval_every"],
                   help="steps between validation passes (default: about 8 a run, 10 to 100 steps apart)")
    p.add_argument("--keep-last", action="store_true",
                   help="the result holds the last step's weights (default: those of the lowest validation loss)")
    p.add_argument("--checkpoint-every", type=int, default=_DEFAULTS["checkpoint_every"])
    p.add_argument("--val-fraction", type=float, default=_DEFAULTS["val_fraction"])
    p.add_argument("--warmup", type=int)
    p.add_argument("--augment", action="store_true", help="random transposition and small tempo changes")
    p.add_argument("--completion-only", action="store_true", help="no loss on a window's restated header")
    p.add_argument("--memory-loss", action="store_true",
                   help="learn the NLL of the network mixed with the piece memory, as the product samples, so that "
                        "the network learns what the memory cannot give (validation still reads the network alone)")
    p.add_argument("--device", default=_DEFAULTS["device"])
    p.add_argument("--stop-at", type=int, help="checkpoint and stop at this step, keeping the schedule")
    p.add_argument("--threads", type=_positive_int,
                   help="torch CPU threads (runs that must agree bit for bit need the same count)")
    p.add_argument("--log-every", type=int)
    p.add_argument("--time-budget", type=parse_duration, metavar="TIME",
                   help="train for this long (e.g. 90s, 10m, 1.5h): the number of steps and the schedule are set "
                        "from the first steps' speed (with --steps: at most that many)")
    p.add_argument("--cache-dir", help="token cache folder (default: <out>/token_cache)")


def _add_style_arguments(p: argparse.ArgumentParser) -> None:
    """What a style learns, the infill examples, dropout, window augmentations, weight averaging and the Flat
    token."""
    p.add_argument("--style-parts", metavar="PARTS",
                   help="style mode: what the style learns, joined by +: lora, offset (a state offset read at "
                        "every token), bias (LayerNorms, decay biases, token-shift mixes), state (the opening) "
                        f"(default {_DEFAULTS['style_parts']})")
    p.add_argument("--style-rank", type=_positive_int, help="style mode: LoRA rank (default: 16, less if over 1 MB)")
    p.add_argument("--offset-rank", type=int,
                   help="style mode: rank of the state offset per head, 0 = full (default: full if it fits 1 MB)")
    p.add_argument("--infill-share", type=float, help="fraction of training windows made into infill examples "
                                                      f"(default {_DEFAULTS['infill_share']:g})")
    p.add_argument("--part-share", type=float,
                   help=f"of the infill examples, the part infills (default {_DEFAULTS['part_share']:g})")
    p.add_argument("--dropout", type=float, help="dropout on each block's outputs while training "
                                                 f"(default {DEFAULT_DROPOUT.get('style', 0):g} in style mode, else 0)")
    p.add_argument("--key-augment", type=float, metavar="SHARE",
                   help="share of training windows moved into the key of another piece of the folder, so each tune "
                        "is heard in the folder's other keys while their mix stays the folder's "
                        f"(default {MODE_DEFAULTS['key_augment'].get('style', 0):g} in style mode, else 0)")
    p.add_argument("--crop-share", type=float, metavar="SHARE",
                   help="share of training windows taken from a random bar of their piece instead of their fixed "
                        f"place (default {MODE_DEFAULTS['crop_share'].get('style', 0):g} in style mode, else 0)")
    p.add_argument("--average-from", type=float, metavar="SHARE",
                   help="from this share of the steps on, validate and keep the running mean of the trained weights "
                        f"(default {MODE_DEFAULTS['average_from'].get('style')} in style mode, else off)")
    p.add_argument("--no-dynamics-flag", action="store_true",
                   help="leave out the Flat token of one-velocity pieces (to measure what it is worth)")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `rwkv-music train`, in the order --help lists them."""
    _add_run_arguments(p)
    _add_model_arguments(p)
    _add_schedule_arguments(p)
    _add_style_arguments(p)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a parsed `train` command line; an option that is absent or None keeps
    TrainConfig's default."""
    values = {field: getattr(args, option) for option, field in _FIELD_OF.items()
              if getattr(args, option, None) is not None}
    if not values.get("device", True):
        del values["device"]  # --device "" means the default, as it always did
    if getattr(args, "no_dynamics_flag", False):
        values["dynamics_flag"] = False
    if getattr(args, "keep_last", False):
        values["keep_best"] = False
    return TrainConfig(**values)

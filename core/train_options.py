"""The options of a training run, shared by `rwkv-music train` and `python -m core.train` (torchrun).
Kept apart from core/train.py so that building the CLI parser does not import torch."""
from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _duration(text: str) -> float:
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


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder")
    p.add_argument("--out", required=True)
    p.add_argument("--base")
    p.add_argument("--mode", choices=["full", "lora", "style", "state"], default="full",
                   help="full: every weight; lora: adapters merged into a new model; style: a small style.pth for "
                        "the base model (--style-parts); state: a style of only a learned initial state")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int)
    g.add_argument("--epochs", type=float)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--layers", type=int, default=6, help="model depth when pretraining (no --base)")
    p.add_argument("--width", type=int, default=384, help="model width when pretraining (no --base)")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--warmup", type=int)
    p.add_argument("--augment", action="store_true", help="random transposition and small tempo changes")
    p.add_argument("--completion-only", action="store_true", help="no loss on a window's restated header")
    p.add_argument("--device", default="auto")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop at this step, keeping the schedule")
    p.add_argument("--threads", type=_positive_int,
                   help="torch CPU threads (runs that must agree bit for bit need the same count)")
    p.add_argument("--log-every", type=int)
    p.add_argument("--time-budget", type=_duration, metavar="TIME",
                   help="train for this long (e.g. 90s, 10m, 1.5h): the number of steps and the schedule are set "
                        "from the first steps' speed (with --steps: at most that many)")
    p.add_argument("--cache-dir", help="token cache folder (default: <out>/token_cache)")
    p.add_argument("--style-parts", metavar="PARTS",
                   help="style mode: what the style learns, joined by +: lora, offset (a state offset read at "
                        "every token), bias (LayerNorms, decay biases, token-shift mixes), state (the opening) "
                        "(default lora+offset+bias+state)")
    p.add_argument("--style-rank", type=_positive_int, help="style mode: LoRA rank (default: 8, less if over 1 MB)")
    p.add_argument("--offset-rank", type=int,
                   help="style mode: rank of the state offset per head, 0 = full (default: full if it fits 1 MB)")
    p.add_argument("--infill-share", type=float,
                   help="fraction of training windows made into infill examples (default 0)")
    p.add_argument("--part-share", type=float, help="of the infill examples, the part infills (default 0.5)")
    p.add_argument("--no-dynamics-flag", action="store_true",
                   help="leave out the Flat token of one-velocity pieces (to measure what it is worth)")

"""One training example from one window: a pure function of the window, the run's settings and a seed.

`draw_example` makes the example's random draws, each from its own generator seeded by the example's seed and
the draw's name (so that turning one augmentation on or off leaves the others' draws as they were): a crop
from a random Bar of the piece (crop_share), transposition and tempo (augment), a move into the key of another
piece of the folder (key_augment), and an infill layout (infill_share). Then the inputs, targets and loss mask
come out of core.training.data.build_example. The same window, settings and seed give the same example, so a resumed
run sees the examples the uninterrupted run saw.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from core.training import augment as A
from core.training import data as D
from core.training.train_config import TrainConfig


@dataclass(frozen=True)
class WindowSource:
    """A training window and what its draws may take from its piece and from the folder."""
    tokens: list[int]                 # the window, its restated header first (core.training.data.window_tokens)
    head: int                         # the restated header's length
    piece_tokens: Sequence[int]       # the whole piece: a crop may start at any of its Bars
    piece_bars: list | None           # the piece's (Bar index, restated header)s; None: no crops
    piece_key: tuple | None           # the piece's key (None: it has none)
    folder_keys: list | None          # every training piece's key, where a window may move; None: no key moves


def example_seed(run_seed: int, epoch: int, position: int) -> str:
    """The seed of the example at `position` of the global batch order in `epoch`."""
    return f"{run_seed}:{epoch}:{position}"


def draw_example(source: WindowSource, config: TrainConfig, tokenizer, seed: str) -> D.Example:
    """The training example of `source` for `seed` (see the module's docstring for the draws)."""
    tokens, head = source.tokens, source.head
    if source.piece_bars is not None and random.Random(f"crop:{seed}").random() < config.resolved("crop_share"):
        crop = A.cropped(source.piece_tokens, source.piece_bars, len(source.tokens), random.Random(f"crop-at:{seed}"))
        if crop is not None:
            tokens, head = crop
    if config.augment:
        tokens = A.augment_tokens(tokens, tokenizer, random.Random(seed), config.max_transpose, config.tempo_jitter)
    rng = random.Random(f"key:{seed}")
    if source.folder_keys is not None and rng.random() < config.resolved("key_augment"):
        tokens = A.in_another_key(tokens, tokenizer, source.piece_key, source.folder_keys, rng)
    if not config.dynamics_flag and tokenizer.flat_id is not None:
        head -= tokens[:head].count(tokenizer.flat_id)
        tokens = D.without_flat(tokens, tokenizer)
    if config.infill_share > 0:
        rng = random.Random(f"infill:{seed}")
        if rng.random() < config.infill_share:
            infill = D.infill_tokens(tokens, tokenizer, rng, config.ctx_len + 1, config.part_share)
            if infill is not None:
                tokens, head = infill, 0  # every token of an infill example is learnt
    return D.build_example(tokens, config.ctx_len, head if config.completion_only else 0, tokenizer.pad_id)

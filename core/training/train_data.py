"""The windows a training run learns from and validates on, and the order it reads them in.

`TrainingSet.split`: the scanned pieces split into training and validation pieces (core.training.data: by path hash,
validation capped at what it reads), both cut into windows of the context length, with what the example draws
need of each training piece (its Bars for crops, its key for key moves); `source(i)` is training window i as
core/training/train_example.py draws it. `BatchOrder`: which windows each batch holds, from (seed, epoch) alone, so a
resumed run reads the batches the uninterrupted one read.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

from core.training import augment as A
from core.training import data as D
from core.training.keys import key_of_histogram
from core.training.train_config import TrainConfig
from core.training.train_example import WindowSource


@dataclass
class TrainingSet:
    """A run's training and validation pieces and their windows, and what the example draws need."""
    train_pieces: list[D.Piece]
    val_pieces: list[D.Piece]
    train_windows: list[D.Window]
    val_windows: list[D.Window]
    piece_bars: list | None   # each training piece's (Bar index, restated header)s; None: windows are not cropped
    piece_keys: list | None   # each training piece's key (None: no key); None: windows do not change key

    @classmethod
    def split(cls, pieces: Sequence[D.Piece], config: TrainConfig, tokenizer) -> "TrainingSet":
        train, val = D.split_pieces(pieces, config.val_fraction, config.seed)
        train, val = D.cap_validation(train, val, tokenizer, config.ctx_len,
                                      config.max_eval_batches * config.batch_size, config.seed)
        bars = ([tokenizer.bar_headers([int(t) for t in p.tokens]) for p in train]
                if config.resolved("crop_share") > 0 else None)
        keys = ([key_of_histogram(A.pitch_class_counts(p.tokens, tokenizer)) for p in train]
                if config.resolved("key_augment") > 0 else None)
        return cls(train, val, D.make_windows(train, tokenizer, config.ctx_len, bars),
                   D.make_windows(val, tokenizer, config.ctx_len), bars, keys)

    @property
    def fingerprint(self) -> str:
        """A hash of the training pieces' paths and contents: resume.pt notes it to report a changed folder."""
        listing = "\n".join(f"{p.path}:{p.digest}" for p in self.train_pieces)
        return hashlib.sha1(listing.encode()).hexdigest()[:16]

    @property
    def train_tokens(self) -> int:
        return sum(len(p.tokens) for p in self.train_pieces)

    def source(self, window_index: int) -> WindowSource:
        w = self.train_windows[window_index]
        tokens, head = D.window_tokens(self.train_pieces, w)
        return WindowSource(tokens, head, self.train_pieces[w.piece].tokens,
                            None if self.piece_bars is None else self.piece_bars[w.piece],
                            None if self.piece_keys is None else self.piece_keys[w.piece], self.piece_keys)


class BatchOrder:
    """Deterministic order of training windows from (seed, epoch). Each epoch shuffles the windows,
    then sorts each run of LENGTH_GROUP batches' worth by length and deals them out as batches, whose
    order is shuffled again: a batch pads to its longest window, so windows of like length together
    waste little (a folder of short tunes padded a quarter of each random batch). A batch is a position
    (epoch, index); rank r of w takes the elements r, r+w, ... of each global batch."""
    LENGTH_GROUP = 16

    def __init__(self, lengths: Sequence[int], batch: int, seed: int) -> None:
        self.lengths, self.n, self.batch, self.seed = list(lengths), len(lengths), batch, seed
        self.per_epoch = max(1, self.n // batch)
        self._epoch, self._order = -1, []

    def indices(self, epoch: int, index: int) -> list[int]:
        if epoch != self._epoch:
            self._order, self._epoch = self._deal(epoch), epoch
        return self._order[index]

    def _deal(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        order = [perm[k % self.n] for k in range(self.per_epoch * self.batch)]  # fewer windows than a batch: repeat
        span = self.batch * self.LENGTH_GROUP
        batches = []
        for start in range(0, len(order), span):
            group = sorted(order[start:start + span], key=self.lengths.__getitem__)
            batches += [group[j:j + self.batch] for j in range(0, len(group), self.batch)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

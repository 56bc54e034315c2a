"""Augmentations of training windows: each returns a new token list and leaves the original alone.

- transposition by a random number of semitones and small tempo changes (`augment_tokens`, --augment);
- a move into the key of another piece of the same folder (`in_another_key`, a style's --key-augment): a folder
  in D and G stays in D and G, each tune heard in the folder's other keys;
- a crop of the same length from a random Bar of the piece, its header restated (`cropped`, --crop-share).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from .keys import Key, key_shift
from ..tokenizer import playable_range


def _pitched_positions(tokens: Sequence[int], tokenizer) -> list[tuple[int, int]]:
    """(index, program) of every pitch token of a pitched (not drum) instrument; the instrument is
    restated after every Bar, so a pitch before that restatement has no known owner and is left out."""
    kinds = tokenizer.kind_ids
    bar, instrument_kind = tokenizer.bar_id, _kind_code(tokenizer, "instrument")
    pitch_kind = _kind_code(tokenizer, "pitch")
    owners, current = [], None
    for i, t in enumerate(tokens):
        k = kinds[t] if 0 <= t < len(kinds) else -1
        if t == bar:
            current = None
        elif k == instrument_kind:
            current = tokenizer.value(t)
        elif k == pitch_kind and current is not None and not current[1]:
            owners.append((i, current[0]))
    return owners


def pitch_class_counts(tokens: Sequence[int], tokenizer) -> np.ndarray:
    """How many pitched notes of each of the 12 pitch classes a token list holds (drums never count)."""
    pitch0 = tokenizer.pitch_id(0)
    counts = np.zeros(12)
    for i, _ in _pitched_positions(tokens, tokenizer):
        counts[(int(tokens[i]) - pitch0) % 12] += 1
    return counts


def augment_tokens(tokens: Sequence[int], tokenizer, rng, max_transpose: int = 5,
                   tempo_jitter: float = 0.05, key_shift: int | None = None) -> list[int]:
    """The same window transposed (drums never; every pitched note kept inside its instrument's range, or
    the range its notes already span) and with every tempo scaled by one random factor in
    [1 - tempo_jitter, 1 + tempo_jitter]. The shift is random within max_transpose semitones, or, with
    key_shift, key_shift plus whole octaves, the smallest of them that fits (none fits: not transposed)."""
    kinds = tokenizer.kind_ids
    tempo_kind = _kind_code(tokenizer, "tempo")
    pitch0 = tokenizer.pitch_id(0)
    out = [int(t) for t in tokens]
    owners = _pitched_positions(out, tokenizer)
    lo, hi = (-max_transpose, max_transpose) if key_shift is None else (-127, 127)
    for i, program in owners:
        pitch = out[i] - pitch0
        r_lo, r_hi = playable_range(program)
        lo = max(lo, min(r_lo, pitch) - pitch)
        hi = min(hi, max(r_hi, pitch) - pitch)
    if not owners or lo > hi:
        shift = 0
    elif key_shift is None:
        shift = rng.randint(lo, hi)
    else:
        fits = [key_shift + 12 * k for k in range(-10, 11) if lo <= key_shift + 12 * k <= hi]
        shift = min(fits, key=abs) if fits else 0
    factor = 1.0 + rng.uniform(-tempo_jitter, tempo_jitter) if tempo_jitter > 0 else 1.0
    if shift:
        for i, _ in owners:
            out[i] += shift
    if factor != 1.0:
        for i, t in enumerate(out):
            if 0 <= t < len(kinds) and kinds[t] == tempo_kind:
                out[i] = tokenizer.tempo_id(tokenizer.value(t) * factor)
    return out


def _kind_code(tokenizer, name: str) -> int:
    return int(tokenizer.kind_ids[tokenizer.ids_of_kind(name)[0]])


def in_another_key(tokens: Sequence[int], tokenizer, source: Key | None, keys: Sequence[Key | None],
                   rng: random.Random) -> list[int]:
    """The window (of a piece in key `source`) moved into the key of a random entry of `keys` (the folder's
    pieces), the mode kept (core.training.keys.key_shift); unchanged when either key is unknown."""
    target = keys[rng.randrange(len(keys))] if keys else None
    if source is None or target is None:
        return [int(t) for t in tokens]
    return augment_tokens(tokens, tokenizer, rng, tempo_jitter=0.0, key_shift=key_shift(source, target))


def cropped(piece: Sequence[int], bars: Sequence[tuple[int, list[int]]], n_tokens: int,
            rng: random.Random) -> tuple[list[int], int] | None:
    """n_tokens from a random Bar of `piece` (bars: (index, restated header) of its Bars, as
    Tokenizer.bar_headers gives them): the header, then the piece after that Bar; with the header's length.
    None when no Bar leaves room for n_tokens."""
    fits = [(i, h) for i, h in bars if i > 0 and len(h) + len(piece) - i - 1 >= n_tokens]
    if not fits:
        return None
    i, h = fits[rng.randrange(len(fits))]
    return list(h) + [int(t) for t in piece[i + 1:i + 1 + n_tokens - len(h)]], len(h)

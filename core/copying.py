"""The copy meter: how much of a generated passage quotes the user's folder.

A memory of the user's pieces makes exact recall possible, so it must be watched: the share of the new
notes' 8-note phrases (pitch and onset within the bar, in time order) that occur somewhere in the folder.
A true continuation of a piece of the same collection is the reference (bench/bench_memory.py `copy`
measures it): a share well above it means the output quotes rather than composes. Torch-free.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from .score import Note, Score

PHRASE_NOTES = 8


def phrase_keys(notes: Iterable[Note], meter: Score, n: int = PHRASE_NOTES) -> list[tuple]:
    """The n-note phrases of `notes` (time order, chords low to high), each note as (pitch, onset in its
    bar); `meter` gives the bar lines (a Score with the notes' tempo map and meter)."""
    ordered = sorted(notes, key=lambda x: (x.start, x.pitch))
    if len(ordered) < n:
        return []
    lines = meter.bar_starts(max(x.start for x in ordered) + 1)
    keyed = []
    bar = 0
    for x in ordered:
        while bar + 1 < len(lines) and lines[bar + 1] <= x.start:
            bar += 1
        keyed.append((x.pitch, x.start - lines[bar]))
    return [tuple(keyed[i:i + n]) for i in range(len(keyed) - n + 1)]


def folder_phrases(pieces: Sequence[Sequence[int]], tokenizer, n: int = PHRASE_NOTES) -> set[tuple]:
    """Every n-note phrase of the folder's pieces (token ids, as a style's memory keeps them)."""
    out: set[tuple] = set()
    for ids in pieces:
        score, _ = tokenizer.decode([int(t) for t in ids])
        out.update(phrase_keys(score.notes, score, n))
    return out


def copy_share(notes: Iterable[Note], meter: Score, reference: set[tuple], n: int = PHRASE_NOTES) -> float | None:
    """The share of the notes' n-note phrases found in `reference` (None: fewer than n notes)."""
    keys = phrase_keys(notes, meter, n)
    if not keys:
        return None
    return sum(k in reference for k in keys) / len(keys)


__all__ = ["PHRASE_NOTES", "copy_share", "folder_phrases", "phrase_keys"]

"""Metrics that compare a generated continuation with the true one (and with its prompt).

Notes are any objects with `start`, `duration` (ticks), `pitch`, `velocity` and `drum` (core.score.Note fits); drums
never count in pitch statistics. All histograms are normalised to sum 1; the overlap of two of them is
the sum of their bin-wise minimums (1: the same shape, 0: nothing in common; 0 when one is empty).

- pitch-class histogram: how often each of the 12 pitch classes sounds (note counts);
- inter-onset intervals: the gaps between successive distinct onsets, in log-spaced bins of a third of
  an octave in time (bin = round(3 * log2(gap in beats)), from 1/16 beat to 4 beats, the rest clamped);
- velocities: bins of VELOCITY_BIN (pianissimo to fortissimo in 16 steps), drums included;
- note density: notes per bar;
- key: Krumhansl-Schmuckler on the duration-weighted pitch-class distribution (core/training/keys.py). Its scale
  is the major scale, or for minor the natural minor plus the raised 7th (harmonic/melodic leading tone).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ..training.keys import key_of_histogram
from ..score import PITCH_CLASS_NAMES, Note, Score

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)
IOI_BIN_MIN, IOI_BIN_MAX = -12, 6  # 3 * log2(1/16) .. 3 * log2(4)
VELOCITY_BIN = 8  # MIDI velocities 1..127 in 16 bins: finer bins make few notes' histograms noise


def _pitched(notes: Iterable) -> list:
    return [n for n in notes if not n.drum]


def _normalised(h: np.ndarray) -> np.ndarray:
    total = h.sum()
    return h / total if total > 0 else h


def pitch_class_histogram(notes: Iterable) -> np.ndarray:
    h = np.zeros(12)
    for n in _pitched(notes):
        h[n.pitch % 12] += 1
    return _normalised(h)


def histogram_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of bin-wise minimums of two histograms (each normalised here); 0 when either is empty."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.sum() <= 0 or b.sum() <= 0:
        return 0.0
    return float(np.minimum(_normalised(a), _normalised(b)).sum())


def inter_onset_intervals(notes: Iterable) -> np.ndarray:
    """Gaps in ticks between successive distinct onsets (all notes, drums included: rhythm is rhythm)."""
    onsets = np.unique(np.array([n.start for n in notes], dtype=np.int64))
    return np.diff(onsets)


def ioi_histogram(notes: Iterable, ticks_per_beat: int) -> np.ndarray:
    gaps = inter_onset_intervals(notes)
    h = np.zeros(IOI_BIN_MAX - IOI_BIN_MIN + 1)
    if len(gaps):
        bins = np.clip(np.round(3 * np.log2(gaps / ticks_per_beat)), IOI_BIN_MIN, IOI_BIN_MAX).astype(int)
        np.add.at(h, bins - IOI_BIN_MIN, 1)
    return _normalised(h)


def velocity_histogram(notes: Iterable) -> np.ndarray:
    h = np.zeros(128 // VELOCITY_BIN)
    for n in notes:
        h[min(max(int(n.velocity), 0), 127) // VELOCITY_BIN] += 1
    return _normalised(h)


def notes_per_bar(notes: Sequence, bars: int) -> float:
    return len(notes) / bars if bars > 0 else 0.0


def density_ratio(generated: Sequence, true: Sequence) -> float:
    """Notes generated per bar / true notes per bar over the same bars (inf if the truth is silent)."""
    if not true:
        return math.inf if generated else 1.0
    return len(generated) / len(true)


def duration_weighted_pitch_classes(notes: Iterable) -> np.ndarray:
    h = np.zeros(12)
    for n in _pitched(notes):
        h[n.pitch % 12] += max(n.duration, 1)
    return h


def estimate_key(notes: Iterable) -> tuple[int, str, float] | None:
    """(tonic pitch class, "major" | "minor", correlation) by Krumhansl-Schmuckler; None without pitched notes
    or with a flat distribution (every pitch class equally present: no key to speak of)."""
    return key_of_histogram(duration_weighted_pitch_classes(notes))


def key_name(key: tuple[int, str, float] | None) -> str:
    return "none" if key is None else f"{PITCH_CLASS_NAMES[key[0]]} {key[1]}"


def scale_pitch_classes(tonic: int, mode: str) -> frozenset[int]:
    steps = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    return frozenset((tonic + s) % 12 for s in steps)


def in_key_share(notes: Iterable, key: tuple[int, str, float] | None) -> float:
    """Share of pitched notes whose pitch class is in the key's scale (nan without notes or key)."""
    pitched = _pitched(notes)
    if not pitched or key is None:
        return math.nan
    scale = scale_pitch_classes(key[0], key[1])
    return sum(n.pitch % 12 in scale for n in pitched) / len(pitched)


def compare_continuation(prompt: Sequence, generated: Sequence, true: Sequence, bars: int,
                         ticks_per_beat: int) -> dict:
    """All continuation metrics for one prompt. The key is estimated on the prompt."""
    key = estimate_key(prompt)
    return {
        "pitch_class_overlap": histogram_overlap(pitch_class_histogram(generated), pitch_class_histogram(true)),
        "density_ratio": density_ratio(generated, true),
        "notes_per_bar": notes_per_bar(generated, bars),
        "true_notes_per_bar": notes_per_bar(true, bars),
        "ioi_overlap": histogram_overlap(ioi_histogram(generated, ticks_per_beat), ioi_histogram(true, ticks_per_beat)),
        "velocity_overlap": histogram_overlap(velocity_histogram(generated), velocity_histogram(true)),
        "in_key": in_key_share(generated, key),
        "true_in_key": in_key_share(true, key),
        "key": key_name(key),
    }


def mean_metrics(rows: Sequence[dict]) -> dict:
    """Mean of every numeric metric over prompts (nan and inf values left out of each mean)."""
    out = {}
    for name in rows[0] if rows else ():
        values = [r[name] for r in rows if isinstance(r[name], (int, float)) and math.isfinite(r[name])]
        if values or isinstance(rows[0][name], (int, float)):
            out[name] = float(np.mean(values)) if values else math.nan
    return out


def hide_tracks(score: Score, first_bar: int, bars: int):
    """A placement case (core.voices): every track's notes before bar `first_bar` (counted from 0), the notes
    of the `bars` bars from there without their tracks, the index of the track each came from, and the tick
    where they start. None if the piece is shorter."""
    lines = score.bar_starts(score.end_tick)
    if len(lines) < first_bar + bars + 1:
        return None
    start, end = lines[first_bar], lines[first_bar + bars]
    tracks = score.tracks(include_empty=True)
    before = [[n for n in t.notes if n.start < start] for t in tracks]
    truth, new = [], []
    for i, t in enumerate(tracks):
        for n in t.notes:
            if start <= n.start < end:
                truth.append(i)
                new.append(Note(n.start, n.duration, n.pitch, n.velocity, n.program, n.drum))
    return before, new, truth, start

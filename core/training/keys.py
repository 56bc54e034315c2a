"""Keys of pitch-class distributions (Krumhansl-Schmuckler), and the shift that moves one key onto another.

The duration- or count-weighted pitch-class distribution is correlated (Pearson) with the Krumhansl-Kessler
major and minor probe-tone profiles in all 12 rotations; the best one is the key.
"""
from __future__ import annotations

import numpy as np

# Krumhansl & Kessler's probe-tone ratings (1982), tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

Key = tuple[int, str, float]  # (tonic pitch class, "major" | "minor", correlation)


def key_of_histogram(dist) -> Key | None:
    """The best-correlated key of a 12-bin pitch-class distribution; None when it is empty or flat (every
    pitch class equally present: no key to speak of)."""
    dist = np.asarray(dist, dtype=float)
    if dist.sum() <= 0 or np.allclose(dist, dist[0]):
        return None
    best = None
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(dist, np.roll(profile, tonic))[0, 1])
            if best is None or r > best[2]:
                best = (tonic, mode, r)
    return best


def key_shift(source: Key, target: Key) -> int:
    """Semitones in [-6, 5] that move `source`'s tonic onto `target`'s, or onto the tonic of the relative
    key of `target` in `source`'s mode (a minor tune sent to G major goes to E minor), so a mode is kept."""
    tonic = target[0]
    if target[1] != source[1]:
        tonic += 9 if source[1] == "minor" else 3  # relative minor: a minor third down; major: up
    return (tonic - source[0] + 6) % 12 - 6

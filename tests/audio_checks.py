"""Reading recorded audio in the synth tests."""
from __future__ import annotations

import numpy as np

SR = 48000  # the test JACK server's rate

def first_sound_after(audio: np.ndarray, t0: float, when: float, threshold: float = 0.002) -> float:
    """perf_counter time of the first sample over `threshold` after `when` - 5 ms (audio starts at t0)."""
    i = max(0, int((when - 0.005 - t0) * SR))
    loud = np.nonzero(np.abs(audio[i:]).max(axis=1) > threshold)[0]
    return t0 + (i + loud[0]) / SR if len(loud) else float("nan")


def pitch_of(audio: np.ndarray, start: float, end: float) -> float:
    """The strongest frequency between two times (mono, Hann window, parabolic peak interpolation)."""
    x = audio[int(start * SR):int(end * SR)].mean(axis=1)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    k = int(np.argmax(spectrum[1:])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
    k += 0.5 * (a - c) / (a - 2 * b + c)
    return k * SR / (8 * len(x))

"""Reading recorded audio in the synth tests."""
from __future__ import annotations

import numpy as np
import pytest

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


def skip_without_synth_and_jack_client() -> None:
    """Skip the calling test module (call it at import) without the synth's engine and audio library or the
    JACK client library that records it."""
    pytest.importorskip("tinysoundfont")
    pytest.importorskip("miniaudio")
    try:
        import jack  # noqa: F401  (JACK-Client: raises OSError, not ImportError, where libjack is missing)
    except (ImportError, OSError) as e:
        pytest.skip(f"no JACK client library: {e}", allow_module_level=True)

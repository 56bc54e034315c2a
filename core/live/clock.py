"""MIDI clock: following a DAW's (tempo, transport, song position) and sending our own."""
from __future__ import annotations

import threading
import time
from collections import deque

import mido

from ..score import DEFAULT_BPM
from .timing import raise_thread_priority, sleep_until

CLOCKS_PER_BEAT = 24


class ClockFollower:
    """Follows a DAW's MIDI clock: tempo by a least-squares line through the last `window` clock ticks
    (single intervals jitter by a JACK period), transport state and song position."""

    def __init__(self, window: int = 48):
        self.window = window
        self.running = False
        self._times: deque[float] = deque(maxlen=window)
        self._position = 0  # clock ticks since song position 0
        self._last_time: float | None = None
        self._lock = threading.Lock()

    def __call__(self, msg: mido.Message, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        with self._lock:
            if msg.type == "clock":
                if self.running:
                    if self._last_time is not None:
                        self._position += 1
                    self._last_time = t
                self._times.append(t)
            elif msg.type == "start":
                self.running, self._position, self._last_time = True, 0, None
                self._times.clear()
            elif msg.type == "continue":
                self.running, self._last_time = True, None
                self._times.clear()
            elif msg.type == "stop":
                self.running = False
            elif msg.type == "songpos":
                self._position = msg.pos * CLOCKS_PER_BEAT // 4  # song position counts sixteenths
                self._last_time = None

    @property
    def bpm(self) -> float | None:
        """Tempo from the fitted seconds per clock tick; None until 8 ticks have arrived."""
        with self._lock:
            times = list(self._times)
        n = len(times)
        if n < 8:
            return None
        mean_i = (n - 1) / 2.0
        mean_t = sum(times) / n
        num = sum((i - mean_i) * (t - mean_t) for i, t in enumerate(times))
        den = sum((i - mean_i) ** 2 for i in range(n))
        seconds_per_tick = num / den
        return 60.0 / (seconds_per_tick * CLOCKS_PER_BEAT) if seconds_per_tick > 0 else None

    def beat_at(self, t: float | None = None) -> float | None:
        """The song position in beats at perf_counter time `t` (default now), extrapolated from the last tick."""
        bpm = self.bpm
        with self._lock:
            if self._last_time is None:
                return None
            position, last = self._position, self._last_time
        t = time.perf_counter() if t is None else t
        extra = (t - last) * bpm / 60.0 if (bpm and self.running) else 0.0
        return position / CLOCKS_PER_BEAT + extra


class ClockSender:
    """Sends MIDI clock (24 per quarter note) with start/stop, on absolute deadlines from its own thread."""

    def __init__(self, port, bpm: float = DEFAULT_BPM):
        self.port = port
        self.bpm = bpm
        self.sent_times: deque[tuple[float, float]] = deque(maxlen=10_000)  # (deadline, sent)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, at: float | None = None) -> "ClockSender":
        self._stop.clear()
        at = time.perf_counter() + 0.01 if at is None else at
        self._thread = threading.Thread(target=self._run, args=(at,), name="midi-clock", daemon=True)
        self._thread.start()
        return self

    def _run(self, t0: float) -> None:
        raise_thread_priority()
        if not sleep_until(t0, self._stop):
            return
        self.port.send(mido.Message("start"))
        deadline = t0
        while True:
            if not sleep_until(deadline, self._stop):
                break
            self.port.send(mido.Message("clock"))
            self.sent_times.append((deadline, time.perf_counter()))
            deadline += 60.0 / (self.bpm * CLOCKS_PER_BEAT)  # read every tick: tempo changes apply at once

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
            self.port.send(mido.Message("stop"))

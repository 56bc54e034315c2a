"""Real time: perf_counter deadlines met by sleeping then spinning, real-time thread priority where the OS
grants it, and the Timeline that maps Score ticks to perf_counter seconds through a tempo map."""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

from ..score import Score

SPIN_SECONDS = 0.001  # sleep until this close to a deadline, then spin: sub-millisecond accuracy


def sleep_until(deadline: float, interrupt: threading.Event | None = None, spin: float = SPIN_SECONDS) -> bool:
    """Wait for a perf_counter deadline: sleep, then spin the last `spin` seconds. False if interrupted."""
    remaining = deadline - time.perf_counter()
    if remaining > spin:
        if interrupt is not None:
            if interrupt.wait(remaining - spin):
                return False
        else:
            time.sleep(remaining - spin)
    while time.perf_counter() < deadline:
        pass
    return not (interrupt is not None and interrupt.is_set())


def raise_thread_priority(priority: int = 5) -> bool:
    """Best effort: real-time (FIFO) scheduling for the calling thread where the OS allows it
    (Linux with CAP_SYS_NICE or an rtprio limit); a loaded machine then delays its deadlines far less."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # pid 0: this thread only
        return True
    except (AttributeError, OSError):
        return False


def wait_until(done: Callable[[], bool], timeout: float | None = None, poll: float = 0.002) -> bool:
    """Poll `done()` every `poll` seconds until it holds (True) or `timeout` seconds have passed (False)."""
    end = None if timeout is None else time.perf_counter() + timeout
    while not done():
        if end is not None and time.perf_counter() > end:
            return False
        time.sleep(poll)
    return True


class Timeline:
    """Maps Score ticks to perf_counter seconds through a Score's tempo map: `origin_tick` at `origin_time`."""

    def __init__(self, tempo_map: Score, origin_tick: float, origin_time: float):
        self.tempo_map = tempo_map
        self.origin_tick = origin_tick
        self.origin_time = origin_time
        self._origin_seconds = tempo_map.seconds_at(origin_tick)

    def time_at(self, tick: float) -> float:
        return self.origin_time + self.tempo_map.seconds_at(tick) - self._origin_seconds

    def tick_at(self, t: float) -> float:
        return self.tempo_map.tick_at(t - self.origin_time + self._origin_seconds)

    def shift(self, seconds: float) -> None:
        self.origin_time += seconds

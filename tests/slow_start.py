"""A SynthConfig whose child process starts slowly: unpickling it (in SchedulerProcess's spawned child, before
the child opens anything) sleeps `start_delay` seconds. A real child process with a real handshake, only
later: the tests of a start in flight (cancel, shutdown, the GUI thread left free) need one that lasts."""
from __future__ import annotations

import time
from dataclasses import dataclass

from core.live.synth import SynthConfig


@dataclass
class SlowStartConfig(SynthConfig):
    start_delay: float = 2.0

    def __setstate__(self, state: dict) -> None:
        time.sleep(state.get("start_delay", 0.0))  # in the child: the parent pickled it without a pause
        self.__dict__.update(state)

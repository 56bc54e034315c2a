"""A training run in a spawned child process, so that a GUI or a live MIDI stream in this process keeps
its timing: `start_job(config)` hands back a `TrainingJob` whose events (core.training.train_config.TrainEvent)
arrive over a queue. The child runs core.training.train.run_training; this side never imports torch.
"""
from __future__ import annotations

import os
import queue as queue_mod
import time
from typing import Iterator

from core.training.train_config import TrainConfig, TrainEvent, TrainingError


def _child_main(config_dict: dict, events, cancel, parent_pid: int) -> None:
    def parent_gone() -> bool:
        return os.getppid() != parent_pid

    def emit(event: TrainEvent) -> None:
        events.put(event)

    try:
        from core.training.train import run_training  # torch and the loop: in the child only
        run_training(TrainConfig.from_dict(config_dict), emit, lambda: cancel.is_set() or parent_gone())
    except TrainingError as e:
        events.put(TrainEvent("error", message=str(e)))
    except Exception as e:  # anything else still reaches the parent as one line
        events.put(TrainEvent("error", message=f"{type(e).__name__}: {e}"))
    finally:
        events.close()
        events.join_thread()


class TrainingJob:
    """A training run in a spawned child process. Read progress with `events()` (blocking iterator) or
    `poll_events()` (what has arrived, without waiting); `cancel()` asks for a clean stop."""

    def __init__(self, config: TrainConfig) -> None:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        self.config = config
        self._events = ctx.Queue()
        self._cancel = ctx.Event()
        self._proc = ctx.Process(target=_child_main, name="rwkv-music-train",
                                 args=(config.to_dict(), self._events, self._cancel, os.getpid()))
        # Not a daemon: the child tokenizes with worker processes of its own, which daemons may not have.
        # It stops by itself when this process goes away (see _child_main).
        self._proc.start()
        self.final: TrainEvent | None = None

    @property
    def running(self) -> bool:
        return self.final is None

    def _take(self, timeout: float | None) -> TrainEvent | None:
        if self.final is not None:
            return None
        try:
            event = self._events.get(timeout=timeout) if timeout != 0 else self._events.get_nowait()
        except queue_mod.Empty:
            if not self._proc.is_alive():
                try:  # the last events may still be in the pipe
                    event = self._events.get(timeout=0.5)
                except queue_mod.Empty:
                    event = TrainEvent("error", message=f"training process ended unexpectedly "
                                                        f"(exit code {self._proc.exitcode})")
            else:
                return None
        if event.terminal:
            self.final = event
            self._proc.join(timeout=30)
        return event

    def poll_events(self) -> list[TrainEvent]:
        out = []
        while (event := self._take(0)) is not None:
            out.append(event)
        return out

    def events(self) -> Iterator[TrainEvent]:
        while self.final is None:
            event = self._take(0.5)
            if event is not None:
                yield event

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> TrainEvent | None:
        """Consume events until the run ends (or `timeout` seconds pass); returns the final event."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.final is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self._take(0.5 if left is None else min(0.5, left))
        return self.final


def start_job(config: TrainConfig) -> TrainingJob:
    return TrainingJob(config)

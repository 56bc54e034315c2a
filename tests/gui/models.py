"""A small real RWKV-7 checkpoint for GUI tests (the bundled base model when present is far larger)."""
from __future__ import annotations

import threading
from pathlib import Path


# fine-tuning runs in GUI tests: tiny windows and batches, one thread, no checkpoints on the way
TINY_TRAINING = {"ctx_len": 64, "batch_size": 2, "eval_every": 2, "max_eval_batches": 1, "threads": 1,
                 "workers": 1, "checkpoint_every": 1000}


def make_tiny_checkpoint(path: Path, n_layer: int = 2, n_embd: int = 64, seed: int = 0,
                         tokenizer_version: str | None = None) -> Path:
    """`tokenizer_version`: None for the latest (with infill tokens); "rwkvmusic-tok-1" for a model made
    before infill."""
    import torch

    from core.network.checkpoint import save_checkpoint
    from core.network.model import ModelConfig, RWKV7
    from core.tokenizer import Tokenizer

    torch.manual_seed(seed)
    tok = Tokenizer() if tokenizer_version is None else Tokenizer(tokenizer_version)
    model = RWKV7(ModelConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=tok.vocab_size))
    save_checkpoint(model, str(path), {"tokenizer": tok.to_dict()})
    return path


def _schedstat(task: str) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds ready to run but waiting for one) of a thread, from Linux's schedstat."""
    try:
        with open(f"/proc/{task}/schedstat") as f:
            on_cpu, waiting, _ = f.read().split()
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None


class GapMeter:
    """How long the GUI event loop was held, from the ticks of a 5 ms QTimer.

    `max_gap` is the longest wall-clock gap between ticks. On a busy machine that includes time the app did
    not cause: the GUI thread ready to run while the OS ran another process, or waiting for the GIL while
    the thread holding it was itself waiting for a CPU. `max_stall` (Linux; elsewhere the wall gap) leaves
    out those two: the time the GUI thread waited in the run queue, and, of the time it was blocked (beyond
    the timer's interval), the longest run-queue wait of another thread of this process (the GIL's holder).
    Its own work, and waits on a lock or on a GIL held by a running thread, all count. Checked: a 60 ms
    sleep in a slot, or a worker holding the GIL 100 ms in one C call, reads as a stall of that length."""

    def __init__(self) -> None:
        import time

        from PySide6.QtCore import QTimer
        self._now = time.perf_counter
        self.max_gap = self.max_stall = 0.0
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)

    @staticmethod
    def _others() -> dict[str, float]:
        """Run-queue seconds of this process's other threads."""
        import os
        me = str(threading.get_native_id())
        out = {}
        for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ():
            stat = _schedstat(f"self/task/{tid}") if tid != me else None
            if stat is not None:
                out[tid] = stat[1]
        return out

    def _tick(self) -> None:
        now, own, others = self._now(), _schedstat("thread-self"), self._others()
        if self._last is not None:
            then, own_then, others_then = self._last
            gap = now - then
            stall = gap
            if own is not None and own_then is not None:
                ran, waited = own[0] - own_then[0], own[1] - own_then[1]
                blocked = max(0.0, gap - ran - waited - self.timer.interval() / 1000)  # beyond the idle wait
                holder_waited = max((w - others_then[t] for t, w in others.items() if t in others_then), default=0.0)
                stall = gap - waited - min(blocked, holder_waited)
            self.max_gap = max(self.max_gap, gap)
            self.max_stall = max(self.max_stall, stall)
        self._last = (now, own, others)

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def report(self) -> str:
        return f"event loop held {self.max_stall * 1000:.0f} ms by the app (longest wall gap {self.max_gap * 1000:.0f} ms)"

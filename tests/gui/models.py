"""A small real RWKV-7 checkpoint for GUI tests (the bundled base model when present is far larger)."""
from __future__ import annotations

from pathlib import Path


def make_tiny_checkpoint(path: Path, n_layer: int = 2, n_embd: int = 64, seed: int = 0) -> Path:
    import torch

    from core.model import ModelConfig, RWKV7, save_checkpoint
    from core.tokenizer import Tokenizer

    torch.manual_seed(seed)
    tok = Tokenizer()
    model = RWKV7(ModelConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=tok.vocab_size))
    save_checkpoint(model, str(path), {"tokenizer": tok.to_dict()})
    return path


class GapMeter:
    """The largest gap between ticks of a 5 ms QTimer: how long the GUI event loop was blocked."""

    def __init__(self) -> None:
        import time

        from PySide6.QtCore import QTimer
        self._now = time.perf_counter
        self.max_gap = 0.0
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = self._now()
        if self._last is not None:
            self.max_gap = max(self.max_gap, now - self._last)
        self._last = now

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

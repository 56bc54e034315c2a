"""Python's cycle collector, run on the GUI thread only.

The collector runs in whichever thread crosses an allocation threshold. When that is a worker (the
MIDI player, a model thread) and the garbage holds a Qt object, the object is destroyed off its
thread, and PySide's destructor waits for the GIL that this very thread holds: the app hangs (seen
in the jam test, the player thread stuck in gc -> QObject::~QObject). So while the app runs,
automatic collection is off and a timer on the GUI thread collects, by the same thresholds.

Each collection walks the objects of its generations, and after start-up torch, Qt and the model are
some 200k long-lived objects: a collection that reached them held the GUI thread 50 ms in the middle of a
continuation (measured). `settle` (called once a model is loaded) exempts them from later collections.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 200


class MainThreadGC(QObject):
    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect)
        self._timer.start(interval_ms)

    def collect(self) -> None:
        """Collect the oldest generation whose count passed its threshold, as gc would have."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        """Hand collection back to Python (tests, and shutdown)."""
        self._timer.stop()
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


def settle() -> None:
    """On the GUI thread, after a large load: collect everything once, then freeze what survives (gc.freeze)
    so that later collections never walk it again. Earlier frozen objects are thawed first, so a replaced
    model that has become garbage is still freed."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()

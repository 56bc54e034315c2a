"""Bar/beat ruler above the roll: click to move the playhead, drag to set the loop region."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPolygonF
from PySide6.QtWidgets import QWidget

from core import arrange
from core.score import TICKS_PER_BEAT
from musicapp import editing
from musicapp.pianoroll import grid

DRAG_PX = 4
BEAT_AIM_PX = 12  # a beat narrower than this is hard to hit: a click then snaps to the bar line


class Ruler(QWidget):
    seekRequested = Signal(int)
    loopChanged = Signal(int, int)

    def __init__(self, view, parent=None) -> None:
        super().__init__(parent)
        self.view = view
        self.doc = view.doc
        self.loop = (0, 0)
        self.loop_enabled = False
        self.playhead = 0.0
        self._press: tuple[float, int] | None = None
        self._dragging = False
        self.setFixedHeight(26)
        view.horizontalScrollBar().valueChanged.connect(self.update)
        view.zoomChanged.connect(self.update)
        self.doc.documentReset.connect(self.update)

    def sizeHint(self) -> QSize:
        return QSize(900, 26)

    def set_playhead(self, tick: float) -> None:
        old = self.view.x_of_tick(self.playhead)
        self.playhead = tick
        new = self.view.x_of_tick(tick)
        self.update(int(min(old, new)) - 8, 0, int(abs(new - old)) + 16, self.height())

    def set_loop(self, start: int, end: int, enabled: bool) -> None:
        self.loop, self.loop_enabled = (start, end), enabled
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        h = self.height()
        p.fillRect(self.rect(), QColor("#23252a"))
        start, end = self.view.visible_ticks()
        if self.loop[1] > self.loop[0]:
            colour = QColor(90, 160, 255, 150 if self.loop_enabled else 60)
            x0, x1 = self.view.x_of_tick(self.loop[0]), self.view.x_of_tick(self.loop[1])
            p.fillRect(QRectF(x0, 0, x1 - x0, h * 0.45), colour)
        bars = list(grid.bars_between(self.doc.meta, start, end))
        bar_px = min((b.signature.bar_ticks for b in bars), default=1920) * self.view.px_per_tick
        label_every = 1 if bar_px >= 28 else (4 if bar_px * 4 >= 28 else 16)
        font = p.font()
        font.setPixelSize(10)
        p.setFont(font)
        previous_sig = None
        for b in bars:
            x = self.view.x_of_tick(b.tick)
            if b.beat_ticks * self.view.px_per_tick >= 6:
                p.setPen(QColor("#5b5f68"))
                for t in range(b.tick + b.beat_ticks, b.tick + b.signature.bar_ticks, b.beat_ticks):
                    bx = self.view.x_of_tick(t)
                    p.drawLine(int(bx), h - 5, int(bx), h)
            if b.index % label_every == 0:
                p.setPen(QColor("#a8acb5"))
                p.drawLine(int(x), h - 12, int(x), h)
                label = str(b.index + 1)
                sig = (b.signature.numerator, b.signature.denominator)
                if sig != previous_sig and (b.index == 0 or b.tick == b.signature.tick) and bar_px >= 64:
                    label += f"  {sig[0]}/{sig[1]}"  # the meter where it starts or changes, room allowing
                p.drawText(QPointF(x + 3, h - 8), label)
            previous_sig = (b.signature.numerator, b.signature.denominator)
        p.setPen(QColor("#e0b060"))  # tempo changes, where they start (the meter is in the bar labels)
        for t in self.doc.meta.tempos[1:]:
            if start <= t.tick <= end:
                p.drawText(QPointF(self.view.x_of_tick(t.tick) + 3, 10), f"♩={t.bpm:g}")
        px = self.view.x_of_tick(self.playhead)
        p.setPen(Qt.NoPen)
        p.setBrush(grid.PLAYHEAD)
        p.drawPolygon(QPolygonF([QPointF(px - 6, 0), QPointF(px + 6, 0), QPointF(px, 10)]))
        p.setPen(QColor("#6d7078"))
        p.drawLine(0, h - 1, self.width(), h - 1)

    def _tick_at(self, x: float) -> int:
        return editing.snap_tick(self.doc, self.view.tick_at_x(x), self.view.roll_scene.snap)

    def mousePressEvent(self, event) -> None:
        x = event.position().x()
        self._press = (x, self._tick_at(x))
        self._dragging = False

    def mouseMoveEvent(self, event) -> None:
        if self._press is None:
            return
        x = event.position().x()
        if abs(x - self._press[0]) >= DRAG_PX:
            self._dragging = True
        if self._dragging:
            a, b = sorted((self._press[1], self._tick_at(x)))
            if b > a:
                self.loop = (a, b)
                self.loopChanged.emit(a, b)
                self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._press is not None and not self._dragging:  # on a beat, so the readout says exactly where
            tick = self.view.tick_at_x(event.position().x())
            narrow = TICKS_PER_BEAT * self.view.px_per_tick < BEAT_AIM_PX
            self.seekRequested.emit(arrange.snap_playhead(self.doc.meta, tick, bars_only=narrow))
        self._press = None
        self._dragging = False

"""Velocity lane under the roll: a stem per note; drag across stems to draw velocities (one undo step)."""
from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QWidget

from musicapp import editing
from musicapp.pianoroll import grid

HIT_PX = 4  # how close to a stem the pointer must be to set it


class VelocityLane(QWidget):
    def __init__(self, view, parent=None) -> None:
        super().__init__(parent)
        self.view = view
        self.scene = view.roll_scene
        self.doc = view.doc
        self._pending: dict[int, int] = {}
        self._dragging = False
        self.setFixedHeight(72)
        view.horizontalScrollBar().valueChanged.connect(self.update)
        view.zoomChanged.connect(self.update)
        for sig in (self.doc.notesAdded, self.doc.notesRemoved, self.doc.notesChanged):
            sig.connect(self.update)
        self.doc.documentReset.connect(self.update)
        self.doc.previewChanged.connect(self.update)
        self.doc.previewNoteAdded.connect(self.update)
        self.scene.selectionIdsChanged.connect(self.update)

    def sizeHint(self) -> QSize:
        return QSize(900, 72)

    def _y(self, velocity: int) -> float:
        return self.height() - 3 - (self.height() - 8) * velocity / 127

    def _velocity_at(self, y: float) -> int:
        return int(round(min(127, max(1, (self.height() - 3 - y) * 127 / (self.height() - 8)))))

    def _visible(self):
        """(id, note, tick where the roll draws it) of the notes in view."""
        start, end = self.view.visible_ticks()
        shown = ((i, n, self.scene.display_start(i, n)) for i, n in self.doc.items())
        return [(i, n, x) for i, n, x in shown if x + n.duration >= start and x <= end]

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#23252a"))
        p.setPen(QColor("#34373d"))
        for v in (32, 64, 96, 127):
            p.drawLine(0, int(self._y(v)), self.width(), int(self._y(v)))
        selected = self.scene.selected
        for i, n, x in self._visible():
            v = self._pending.get(i, n.velocity)
            colour = grid.instrument_colour(*n.instrument)
            if self.scene.placed.get(i) == 0:  # to be replaced by the shown continuation
                colour.setAlphaF(grid.REPLACED_OPACITY)
            self._stem(p, x, v, colour.lighter(150) if i in selected else colour)
        # only the stems in view: drawing every note of a long continuation on each repaint held the
        # GUI thread 40 ms a frame after 24 bars (measured)
        start, end = self.view.visible_ticks()
        for n in self.doc.preview.notes:
            if start <= n.start <= end:
                self._stem(p, n.start, n.velocity, grid.PREVIEW_FILL)
        p.setPen(QColor("#6d7078"))
        p.drawLine(0, 0, self.width(), 0)

    def _stem(self, p: QPainter, tick: int, velocity: int, colour: QColor) -> None:
        x = self.view.x_of_tick(tick)
        y = self._y(velocity)
        p.setPen(QPen(colour, 2))
        p.drawLine(int(x), self.height(), int(x), int(y))
        p.fillRect(QRectF(x - 2.5, y - 2.5, 5, 5), colour)

    def _apply(self, x: float, y: float) -> None:
        targets = self.scene.selected
        v = self._velocity_at(y)
        for i, n, tick in self._visible():
            if abs(self.view.x_of_tick(tick) - x) <= HIT_PX and (not targets or i in targets):
                self._pending[i] = v
        self.update()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            self._dragging = True
            self._pending = {}
            self._apply(event.position().x(), event.position().y())

    def mouseMoveEvent(self, event) -> None:
        if self._dragging:
            self._apply(event.position().x(), event.position().y())

    def mouseReleaseEvent(self, event) -> None:
        if self._dragging:
            self._dragging = False
            pending, self._pending = self._pending, {}
            editing.set_velocities(self.doc, pending)
            self.update()

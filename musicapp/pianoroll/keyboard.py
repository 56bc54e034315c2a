"""The keyboard left of the roll: follows the roll's vertical scroll and zoom; click a key to hear it."""
from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QWidget

from core.score import pitch_name
from musicapp.pianoroll import grid

WHITE, BLACK, PRESSED = QColor("#e9e9ec"), QColor("#1d1e22"), QColor("#7fb8ff")


class Keyboard(QWidget):
    keyPressed = Signal(int)   # pitch
    keyReleased = Signal(int)

    def __init__(self, view, parent=None) -> None:
        super().__init__(parent)
        self.view = view
        self._held: int | None = None
        self.highlighted: set[int] = set()  # keys currently sounding
        self.setFixedWidth(64)
        view.verticalScrollBar().valueChanged.connect(self.update)
        view.zoomChanged.connect(self.update)

    def sizeHint(self) -> QSize:
        return QSize(64, 400)

    def pitch_at(self, y: float) -> int:
        return grid.pitch_at_row((y + self.view.verticalScrollBar().value()) / self.view.px_per_row)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        h = self.view.px_per_row
        w = self.width()
        first = max(0, int(self.view.verticalScrollBar().value() // h))
        last = min(grid.ROWS, first + int(self.height() / h) + 2)
        p.fillRect(self.rect(), WHITE)
        font = p.font()
        font.setPixelSize(max(7, min(11, int(h * 0.8))))
        p.setFont(font)
        for row in range(first, last):
            pitch = grid.ROWS - 1 - row
            y = self.view.y_of_row(row)
            rect = QRectF(0, y, w, h)
            if pitch in self.highlighted or pitch == self._held:
                p.fillRect(rect, PRESSED)
            elif grid.is_black(pitch):
                p.fillRect(QRectF(0, y, w * 0.62, h), BLACK)
            p.setPen(QColor("#9a9ca3"))
            if pitch % 12 in (0, 5):  # boundaries between adjacent white keys B|C and E|F
                p.drawLine(0, int(y + h), w, int(y + h))
            if pitch % 12 == 0 and h >= 7:
                p.setPen(QColor("#303236"))
                p.drawText(rect.adjusted(0, 0, -4, 0), Qt.AlignRight | Qt.AlignVCenter, pitch_name(pitch))
        p.setPen(QColor("#6d7078"))
        p.drawLine(w - 1, 0, w - 1, self.height())

    def mousePressEvent(self, event) -> None:
        self._held = self.pitch_at(event.position().y())
        self.keyPressed.emit(self._held)
        self.update()

    def mouseMoveEvent(self, event) -> None:  # glide over the keys, as on a real keyboard
        if self._held is None:
            return
        pitch = self.pitch_at(event.position().y())
        if pitch != self._held:
            self.keyReleased.emit(self._held)
            self._held = pitch
            self.keyPressed.emit(pitch)
            self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._held is not None:
            self.keyReleased.emit(self._held)
            self._held = None
            self.update()

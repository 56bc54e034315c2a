"""A toolbar handle that drags the piece (with the shown continuation) out as a .mid file, e.g. into a DAW."""
from __future__ import annotations

import os
import tempfile

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QApplication, QToolButton

from core.midi import write_midi


class DragOutButton(QToolButton):
    def __init__(self, doc, parent=None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.setText("Drag MIDI")
        self.setToolTip("Drag this onto your DAW or a folder: the piece and the shown continuation as a .mid")
        self._press: QPoint | None = None

    def export_file(self) -> str:
        """Write the piece to a fresh temporary .mid (named after the document) and return its path."""
        name = os.path.splitext(os.path.basename(self.doc.path or "rwkv-music"))[0]
        folder = tempfile.mkdtemp(prefix="rwkv-music-drag-")
        path = os.path.join(folder, f"{name}.mid")
        write_midi(self.doc.to_score(include_preview=True), path)
        return path

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            self._press = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._press is None or (event.position().toPoint() - self._press).manhattanLength() \
                < QApplication.startDragDistance():
            return
        self._press = None
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(self.export_file())])
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.exec(Qt.CopyAction)
        self.setDown(False)

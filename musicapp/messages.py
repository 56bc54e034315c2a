"""A message bar across the top of the window: errors and notices that never block (no modal dialog),
so a missing port, a broken file or a failed job is said clearly without stopping anything."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

STYLES = {
    "error": "background: #5a2327; color: #ffd9d9;",
    "warning": "background: #574a1f; color: #fff1c2;",
    "info": "background: #1f3d57; color: #d9ecff;",
}


class MessageBar(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.level = ""
        self.hide()

    def show_message(self, text: str, level: str = "error", details: str = "") -> None:
        self.level = level
        self.setStyleSheet(STYLES.get(level, STYLES["info"]))
        self.label.setText(text)
        self.label.setToolTip(details)
        self.show()

    @property
    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

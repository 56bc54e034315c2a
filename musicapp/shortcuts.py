"""The window's keyboard shortcuts where users look for them: a list of every shortcut (Help menu), and
the window-wide keys that a focused number field or slider must not swallow."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QAbstractSlider, QAbstractSpinBox, QDialog, QDialogButtonBox, QHeaderView, QMenu,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

# Keys that mean the same everywhere in the window. A spin box takes Home/Ctrl+E as "cursor to the start /
# end of the text" and a slider Home as "to the minimum": small conveniences that cost the user the
# transport and Export while a panel's field has focus. Editing keys (digits, arrows, Delete) stay theirs.
WINDOW_KEYS = {QKeySequence(k).toString() for k in
               ("Home", "Space", "Ctrl+E", "Ctrl+Return", "Ctrl+R", "Shift+L", "L", "R")}


class ShortcutGuard(QObject):
    """An event filter on the window's number fields and sliders (they get the ShortcutOverride when they
    have focus; filtering only them keeps Python out of every other event): a window-wide key reaches the
    window's action instead of the field."""

    def __init__(self, window) -> None:
        super().__init__(window)
        for field in window.findChildren(QAbstractSpinBox) + window.findChildren(QAbstractSlider):
            field.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if (event.type() == QEvent.ShortcutOverride
                and QKeySequence(event.keyCombination()).toString() in WINDOW_KEYS):
            event.ignore()  # not overridden: the shortcut map triggers the window's action
            return True
        return False


def shortcut_rows(menus: list[QMenu]) -> list[tuple[str, str, str]]:
    """(menu, action, shortcuts) for every action with a shortcut, in menu order, from the actions themselves
    (so the list cannot drift from what the keys do)."""
    rows = []
    for menu in menus:
        for action in menu.actions():
            keys = ", ".join(s.toString(QKeySequence.NativeText) for s in action.shortcuts())
            if keys and not action.isSeparator():
                rows.append((menu.title().replace("&", ""), action.text().replace("&", ""), keys))
    return rows


# what the mouse does where no menu can show it (musicapp.pianoroll.view.wheelEvent, ruler, keyboard)
MOUSE_ROWS = [
    ("Roll", "Zoom in time", "Ctrl+wheel"),
    ("Roll", "Key height", "Alt+wheel, Ctrl+Shift+wheel"),
    ("Roll", "Scroll in time", "Shift+wheel"),
    ("Roll", "Box-select (Draw tool)", "Shift/Ctrl+drag"),
    ("Roll", "Duplicate notes (Select tool)", "Ctrl+drag a note"),
    ("Ruler", "Move the playhead / set the loop region", "click / drag"),
    ("Keyboard", "Hear a key", "click"),
]


class ShortcutsDialog(QDialog):
    def __init__(self, rows: list[tuple[str, str, str]], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = list(rows) + MOUSE_ROWS
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Menu", "Command", "Keys"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.NoSelection)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(560, 720)

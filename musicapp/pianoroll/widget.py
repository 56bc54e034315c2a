"""The assembled piano roll: ruler on top, keyboard on the left, the roll, the velocity lane below."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGraphicsScene, QGridLayout, QLabel, QWidget

from musicapp.document import NoteDocument
from musicapp.pianoroll.keyboard import Keyboard
from musicapp.pianoroll.ruler import Ruler
from musicapp.pianoroll.scene import PianoRollScene
from musicapp.pianoroll.velocity import VelocityLane
from musicapp.pianoroll.view import PianoRollView, Tool


class PianoRoll(QWidget):
    seekRequested = Signal(int)
    loopChanged = Signal(int, int)

    def __init__(self, doc: NoteDocument, parent=None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.scene = PianoRollScene(doc, self)
        self.view = PianoRollView(self.scene, self)
        self.keyboard = Keyboard(self.view, self)
        self.ruler = Ruler(self.view, self)
        self.velocity = VelocityLane(self.view, self)
        self.playhead_tick = 0
        self.loop = (0, 0)
        self.loop_enabled = False

        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        corner = QLabel("")
        corner.setStyleSheet("background: #23252a;")
        lane_label = QLabel("Vel")
        lane_label.setStyleSheet("background: #23252a; color: #a8acb5; padding-left: 6px;")
        layout.addWidget(corner, 0, 0)
        layout.addWidget(self.ruler, 0, 1)
        layout.addWidget(self.keyboard, 1, 0)
        layout.addWidget(self.view, 1, 1)
        layout.addWidget(lane_label, 2, 0)
        layout.addWidget(self.velocity, 2, 1)
        layout.setRowStretch(1, 1)
        layout.setColumnStretch(1, 1)

        self.ruler.seekRequested.connect(self.seekRequested)
        self.ruler.loopChanged.connect(self._on_loop_dragged)
        doc.documentReset.connect(self._on_reset)

    # --- state the rest of the window sets or reads -----------------------------------------
    def set_snap(self, ticks: int) -> None:
        self.scene.snap = ticks
        self.view.resetCachedContent()
        self.scene.invalidate(self.scene.sceneRect(), QGraphicsScene.BackgroundLayer)

    def set_tool(self, tool: Tool) -> None:
        self.view.tool = tool

    def set_playhead(self, tick: float) -> None:
        self.playhead_tick = tick
        self.scene.set_playhead(tick)
        self.ruler.set_playhead(tick)

    def follow_playhead(self, tick: float) -> None:
        """Page the view forward when the playhead leaves it, as DAWs do."""
        start, end = self.view.visible_ticks()
        if not start <= tick <= end:
            self.view.scroll_to_tick(tick, margin=0.05)

    def set_loop(self, start: int, end: int, enabled: bool) -> None:
        self.loop, self.loop_enabled = (start, end), enabled
        self.scene.set_loop(start, end, enabled)
        self.ruler.set_loop(start, end, enabled)

    def _on_loop_dragged(self, start: int, end: int) -> None:
        self.set_loop(start, end, True)
        self.loopChanged.emit(start, end)

    def selected_ids(self) -> list[int]:
        return sorted(self.scene.selected)

    def select_all(self) -> None:
        self.scene.set_selection(self.doc.ids())

    def selection_end(self) -> int | None:
        notes = self.doc.notes(self.selected_ids())
        return max((n.end for n in notes), default=None)

    def zoom_to_fit(self) -> None:
        """Show the whole piece and centre on its pitches (after opening a file)."""
        notes = self.doc.notes()
        end = max(self.doc.end_tick, 16 * 480)
        width = max(200, self.view.viewport().width())
        self.view.set_zoom(px_per_tick=width / (end * 1.05))
        self.view.horizontalScrollBar().setValue(0)
        if notes:
            pitches = sorted(n.pitch for n in notes)
            self.view.center_on_pitch(pitches[len(pitches) // 2])
        else:
            self.view.center_on_pitch(60)

    def _on_reset(self) -> None:
        self.set_playhead(0)
        self.view.resetCachedContent()

"""The assembled piano roll: ruler on top, keyboard on the left, the roll, the velocity lane below."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGraphicsScene, QGridLayout, QLabel, QSlider, QWidget

from musicapp.document import NoteDocument
from musicapp.pianoroll import grid
from musicapp.pianoroll.keyboard import Keyboard
from musicapp.pianoroll.ruler import Ruler
from musicapp.pianoroll.scene import PianoRollScene
from musicapp.pianoroll.velocity import VelocityLane
from musicapp.pianoroll.view import PianoRollView, Tool


class PianoRoll(QWidget):
    seekRequested = Signal(int)
    loopChanged = Signal(int, int)
    midiDropped = Signal(str)
    playheadMoved = Signal(float)

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
        self.view.midiDropped.connect(self.midiDropped)
        doc.documentReset.connect(self._on_reset)
        doc.metaChanged.connect(self._on_meta_changed)

        # key height, for those without Alt/Ctrl+Shift+wheel (the window puts it in a toolbar)
        self.row_zoom = QSlider(Qt.Horizontal)
        self.row_zoom.setRange(int(self.view.MIN_PX_PER_ROW * 10), int(self.view.MAX_PX_PER_ROW * 10))
        self.row_zoom.setValue(int(self.view.px_per_row * 10))
        self.row_zoom.setFixedWidth(100)
        self.row_zoom.setToolTip("Key height (also Alt+wheel or Ctrl+Shift+wheel over the roll)")
        self.row_zoom.valueChanged.connect(lambda v: self.view.set_zoom(px_per_row=v / 10))
        self.view.zoomChanged.connect(self._sync_row_zoom)

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
        self.playheadMoved.emit(tick)

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
        """Show the whole piece and the shown continuation, all their pitches (as far as the key
        height allows), centred."""
        doc, scene = self.doc, self.scene
        notes = doc.notes() + doc.preview.notes
        end = max(max((scene.display_start(i, n) + n.duration for i, n in doc.items()), default=0),
                  max((n.end for n in doc.preview.notes), default=0), 16 * 480)
        if not doc.preview.is_empty():
            end = max(end, doc.preview_region()[1])
        width = max(200, self.view.viewport().width())
        height = max(100, self.view.viewport().height())
        low, high = (min(n.pitch for n in notes), max(n.pitch for n in notes)) if notes else (48, 72)
        rows = high - low + 1 + 2  # a free row above and below
        self.view.set_zoom(px_per_tick=width / (end * 1.05), px_per_row=height / rows)
        self.view.horizontalScrollBar().setValue(0)
        middle = (grid.row_of(high) + grid.row_of(low) + 1) / 2  # the middle of the pitch range, in rows
        self.view.verticalScrollBar().setValue(int(middle * self.view.px_per_row - height / 2))

    def _sync_row_zoom(self) -> None:
        value = int(round(self.view.px_per_row * 10))
        if self.row_zoom.value() != value:
            self.row_zoom.blockSignals(True)
            self.row_zoom.setValue(value)
            self.row_zoom.blockSignals(False)

    def _on_meta_changed(self) -> None:
        self.view.resetCachedContent()
        self.scene.invalidate(self.scene.sceneRect(), QGraphicsScene.BackgroundLayer)
        self.ruler.update()

    def _on_reset(self) -> None:
        self.set_playhead(0)
        self.view.resetCachedContent()

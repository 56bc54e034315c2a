"""The roll's scene: one plain QGraphicsRectItem per note (no Python paint(), so 10k notes stay fast),
the grid drawn in drawBackground, a loop band and a playhead line.

Selection is kept here as a set of note ids rather than Qt's item selection, so selected notes get
our own colours instead of Qt's dashed outline.
"""
from __future__ import annotations

from PySide6.QtCore import QLineF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsRectItem, QGraphicsScene

from core.score import Note, TICKS_PER_BEAT
from musicapp.document import NoteDocument
from musicapp.pianoroll import grid

NOTE_ID = 0          # item data key holding the note id
PREVIEW_ID = -1      # note id marker for continuation notes
MIN_PX_FOR_LINE = 5  # hide grid lines closer than this many pixels


def _cosmetic(color: QColor, width: float = 0) -> QPen:
    pen = QPen(color, width)
    pen.setCosmetic(True)
    return pen


class PianoRollScene(QGraphicsScene):
    selectionIdsChanged = Signal()

    def __init__(self, doc: NoteDocument, parent=None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.snap = TICKS_PER_BEAT // 4
        self.items_by_id: dict[int, QGraphicsRectItem] = {}
        self.preview_items: list[QGraphicsRectItem] = []
        self.selected: set[int] = set()
        self._brushes: dict[tuple, QBrush] = {}
        self.track_colours: dict = {}  # track index -> QColor (the Tracks panel sets them); else the instrument's
        self._instrument_colours: dict = {}
        self._pen = _cosmetic(grid.NOTE_EDGE)
        self._selected_pen = _cosmetic(grid.SELECTED_EDGE, 1.5)
        self._locked_pen = _cosmetic(grid.LOCKED_EDGE, 2)
        self._locked_pen.setStyle(Qt.DashLine)  # dashed: tells a locked note from a selected one
        self._locked_selected_pen = _cosmetic(grid.SELECTED_EDGE, 2)
        self._locked_selected_pen.setStyle(Qt.DashLine)
        self._preview_brush = QBrush(grid.PREVIEW_FILL)
        self._preview_pen = _cosmetic(grid.PREVIEW_EDGE)

        self.region_item = QGraphicsRectItem()  # the bars the pending continuation fills
        self.region_item.setBrush(QBrush(grid.PREVIEW_REGION))
        self.region_item.setPen(QPen(Qt.NoPen))
        self.region_item.setZValue(-9)
        self.region_item.setVisible(False)
        self.addItem(self.region_item)
        self.placed: dict[int, int] = {}  # note id -> display offset in ticks (0: dimmed, to be replaced)

        self.loop_item = QGraphicsRectItem()
        self.loop_item.setBrush(QBrush(grid.LOOP_FILL))
        self.loop_item.setPen(QPen(Qt.NoPen))
        self.loop_item.setZValue(-10)
        self.loop_item.setVisible(False)
        self.addItem(self.loop_item)
        self.playhead = QGraphicsLineItem(QLineF(0, 0, 0, grid.ROWS))
        self.playhead.setPen(_cosmetic(grid.PLAYHEAD, 2))
        self.playhead.setZValue(1000)
        self.addItem(self.playhead)

        doc.documentReset.connect(self.rebuild)
        doc.notesAdded.connect(self._on_added)
        doc.notesRemoved.connect(self._on_removed)
        doc.notesChanged.connect(self._on_changed)
        doc.previewChanged.connect(self._rebuild_preview)
        doc.previewNoteAdded.connect(self._on_preview_note)
        doc.lockedChanged.connect(self._on_locked)
        self.rebuild()

    # --- items ----------------------------------------------------------------------------
    def colour_of(self, note: Note) -> QColor:
        """The note's colour: its track's, or (a note that names no track) its instrument's."""
        colour = self.track_colours.get(note.track)
        if colour is None:
            colour = self._instrument_colours.get(note.instrument)
            if colour is None:
                colour = self._instrument_colours[note.instrument] = grid.instrument_colour(*note.instrument)
        return colour

    def set_track_colours(self, colours: dict) -> None:
        if colours != self.track_colours:
            self.track_colours = dict(colours)
            for i, item in self.items_by_id.items():
                self._style(item, self.doc.note(i), i in self.selected)

    def _brush(self, note: Note, selected: bool) -> QBrush:
        colour = self.colour_of(note)
        key = (colour.rgb(), note.velocity // 16, selected)
        brush = self._brushes.get(key)
        if brush is None:
            if selected:
                colour = colour.lighter(145)
            else:  # quieter notes a little darker, as velocity is otherwise invisible in the roll
                colour = colour.darker(100 + (7 - note.velocity // 16) * 9)
            brush = self._brushes[key] = QBrush(colour)
        return brush

    def _style(self, item: QGraphicsRectItem, note: Note, selected: bool) -> None:
        item.setBrush(self._brush(note, selected))
        if item.data(NOTE_ID) in self.doc.locked:
            item.setPen(self._locked_selected_pen if selected else self._locked_pen)
        else:
            item.setPen(self._selected_pen if selected else self._pen)
        item.setZValue(2 if selected else 1)

    def _make_item(self, note_id: int, note: Note) -> QGraphicsRectItem:
        item = QGraphicsRectItem(note.start, grid.row_of(note.pitch), note.duration, 1)
        item.setData(NOTE_ID, note_id)
        self._style(item, note, note_id in self.selected)
        self.addItem(item)
        return item

    def rebuild(self) -> None:
        for item in self.items_by_id.values():
            self.removeItem(item)
        self.selected = set()  # ids start again from 1 in a new document: an old selection would hit its notes
        self.placed = {}
        self.items_by_id = {i: self._make_item(i, n) for i, n in self.doc.items()}
        self._rebuild_preview()
        self.update_extent()
        self.invalidate(self.sceneRect(), QGraphicsScene.BackgroundLayer)
        self.selectionIdsChanged.emit()

    def _on_added(self, ids: list[int]) -> None:
        for i in ids:
            self.items_by_id[i] = self._make_item(i, self.doc.note(i))
        self._show_placement()

    def _on_removed(self, ids: list[int]) -> None:
        for i in ids:
            item = self.items_by_id.pop(i, None)
            if item is not None:
                self.removeItem(item)
        for i in ids:
            self.placed.pop(i, None)
        if self.selected & set(ids):
            self.selected -= set(ids)
            self.selectionIdsChanged.emit()
        self._show_placement()

    def _on_changed(self, ids: list[int]) -> None:
        for i in ids:
            n = self.doc.note(i)
            item = self.items_by_id[i]
            item.setRect(n.start, grid.row_of(n.pitch), n.duration, 1)
            self._style(item, n, i in self.selected)
        self._show_placement()

    def _on_locked(self, ids: list[int]) -> None:
        for i in ids:
            item = self.items_by_id.get(i)
            if item is not None:
                self._style(item, self.doc.note(i), i in self.selected)

    def is_locked_drawn(self, note_id: int) -> bool:
        """Whether the roll draws the note as locked (its dashed outline)."""
        item = self.items_by_id.get(note_id)
        return item is not None and item.pen().style() == Qt.DashLine

    def _rebuild_preview(self) -> None:
        for item in self.preview_items:
            self.removeItem(item)
        self.preview_items = []
        for n in self.doc.preview.notes:
            self._add_preview_item(n)
        self._show_placement()

    def _show_placement(self) -> None:
        """While a continuation is shown, show what accepting it does: the notes it pushes later are
        drawn where they will go (insert), the notes it replaces are dimmed (replace)."""
        if not self.doc.has_region():
            plan_moved, plan_removed = {}, []
            self.region_item.setVisible(False)
        else:
            plan = self.doc.placement_plan()
            plan_moved, plan_removed = plan.moved, plan.removed
            start, end = self.doc.preview_region()
            self.region_item.setRect(QRectF(start, 0, end - start, grid.ROWS))
            self.region_item.setVisible(end > start)
        placed = {i: n.start - self.doc.note(i).start for i, n in plan_moved.items()}
        placed.update({i: 0 for i in plan_removed})
        for i in set(self.placed) - set(placed):
            item = self.items_by_id.get(i)
            if item is not None:
                item.setPos(0, 0)
                item.setOpacity(1.0)
        for i, offset in placed.items():
            item = self.items_by_id[i]
            item.setPos(offset, 0)
            item.setOpacity(1.0 if offset else grid.REPLACED_OPACITY)
        self.placed = placed
        self.update_extent()

    def display_start(self, note_id: int, note: Note) -> int:
        """Where the roll draws a note: moved later while an inserted continuation is shown."""
        return note.start + self.placed.get(note_id, 0)

    def _on_preview_note(self, variation: int, note: Note) -> None:
        if variation == self.doc.preview.current:
            self._add_preview_item(note)
            if note.end > self.sceneRect().right() - 4 * TICKS_PER_BEAT:
                self.update_extent()

    def _add_preview_item(self, note: Note) -> None:
        item = QGraphicsRectItem(note.start, grid.row_of(note.pitch), note.duration, 1)
        item.setData(NOTE_ID, PREVIEW_ID)
        item.setBrush(self._preview_brush)
        item.setPen(self._preview_pen)
        item.setZValue(3)
        self.addItem(item)
        self.preview_items.append(item)

    def update_extent(self) -> None:
        """Room for 16 more bars after the last note, so there is always space to draw."""
        end = max(self.doc.end_tick, max((n.end for n in self.doc.preview.notes), default=0),
                  self.doc.end_tick + max(self.placed.values(), default=0))
        width = max(end + 64 * TICKS_PER_BEAT, 128 * TICKS_PER_BEAT)
        rect = QRectF(0, 0, width, grid.ROWS)
        if rect != self.sceneRect():
            self.setSceneRect(rect)
            self.playhead.setLine(QLineF(self.playhead.line().x1(), 0, self.playhead.line().x1(), grid.ROWS))

    # --- selection ------------------------------------------------------------------------
    def set_selection(self, ids) -> None:
        ids = set(ids) & set(self.items_by_id)
        if ids == self.selected:
            return
        changed = ids ^ self.selected
        self.selected = ids
        for i in changed:
            self._style(self.items_by_id[i], self.doc.note(i), i in ids)
        self.selectionIdsChanged.emit()

    def note_at(self, pos) -> int | None:
        """Id of the topmost document note under a scene point (continuation notes are not editable)."""
        for item in self.items(pos):
            note_id = item.data(NOTE_ID)
            if note_id is not None and note_id != PREVIEW_ID:
                return note_id
        return None

    def notes_in(self, rect: QRectF) -> list[int]:
        return [i for item in self.items(rect, Qt.IntersectsItemShape)
                if (i := item.data(NOTE_ID)) is not None and i != PREVIEW_ID]

    # --- overlays -------------------------------------------------------------------------
    def set_playhead(self, tick: float) -> None:
        if self.playhead.line().x1() != tick:
            self.playhead.setLine(QLineF(tick, 0, tick, grid.ROWS))

    def set_loop(self, start: int, end: int, visible: bool) -> None:
        self.loop_item.setRect(QRectF(start, 0, max(0, end - start), grid.ROWS))
        self.loop_item.setVisible(visible and end > start)

    # --- grid -----------------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        scale = painter.worldTransform()
        px_per_tick, px_per_row = abs(scale.m11()), abs(scale.m22())
        top, bottom = max(0, int(rect.top())), min(grid.ROWS, int(rect.bottom()) + 1)
        left, right = rect.left(), rect.right()
        painter.fillRect(rect, grid.BACKGROUND_WHITE_ROW)
        for row in range(top, bottom):
            pitch = grid.ROWS - 1 - row
            if grid.is_black(pitch):
                painter.fillRect(QRectF(left, row, right - left, 1), grid.BACKGROUND_BLACK_ROW)
        row_pen, octave_pen = _cosmetic(grid.ROW_LINE), _cosmetic(grid.OCTAVE_LINE)
        for row in range(top, bottom + 1):
            pitch = grid.ROWS - row  # the line at `row` is the bottom edge of pitch + 1 ... top edge of pitch
            if pitch % 12 == 0:
                painter.setPen(octave_pen)
            elif px_per_row >= MIN_PX_FOR_LINE:
                painter.setPen(row_pen)
            else:
                continue
            painter.drawLine(QLineF(left, row, right, row))

        bar_pen, beat_pen, sub_pen = _cosmetic(grid.BAR_LINE), _cosmetic(grid.BEAT_LINE), _cosmetic(grid.SUB_LINE)
        y0, y1 = max(0.0, rect.top()), min(float(grid.ROWS), rect.bottom())
        bars = list(grid.bars_between(self.doc.meta, left, right))
        bar_px = min((b.signature.bar_ticks for b in bars), default=1920) * px_per_tick
        step = 1 if bar_px >= 24 else (4 if bar_px * 4 >= 24 else 16)  # thin out bar lines when zoomed far out
        for b in bars:
            bar_end = b.tick + b.signature.bar_ticks
            if b.index % step == 0:
                painter.setPen(bar_pen)
                painter.drawLine(QLineF(b.tick, y0, b.tick, y1))
            sub = self.snap if self.snap and self.snap < b.beat_ticks else 0
            if sub and sub * px_per_tick >= MIN_PX_FOR_LINE:
                painter.setPen(sub_pen)
                t = b.tick + sub
                while t < bar_end:
                    if (t - b.tick) % b.beat_ticks:
                        painter.drawLine(QLineF(t, y0, t, y1))
                    t += sub
            if b.beat_ticks * px_per_tick >= MIN_PX_FOR_LINE:
                painter.setPen(beat_pen)
                for t in range(b.tick + b.beat_ticks, bar_end, b.beat_ticks):
                    painter.drawLine(QLineF(t, y0, t, y1))

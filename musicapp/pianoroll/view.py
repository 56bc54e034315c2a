"""The roll's view: zoom by transform (scene units are ticks x key rows) and the editing gestures.

Gestures edit the items directly while the mouse moves (cheap) and push one undo command on release.
"""
from __future__ import annotations

from dataclasses import replace
from enum import Enum

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QFrame, QGraphicsRectItem, QGraphicsView, QMenu, QRubberBand

from core.score import Note, TICKS_PER_BEAT
from musicapp import editing
from musicapp.pianoroll import grid
from musicapp.pianoroll.scene import PianoRollScene

EDGE_PX = 6  # grab zone for resizing at a note's right end


class Tool(Enum):
    DRAW = "draw"
    SELECT = "select"


def midi_paths(mime) -> list[str]:
    """Local .mid/.midi files in dragged data."""
    return [u.toLocalFile() for u in mime.urls()
            if u.isLocalFile() and u.toLocalFile().lower().endswith((".mid", ".midi"))]


class PianoRollView(QGraphicsView):
    zoomChanged = Signal()
    auditionRequested = Signal(int, int, int, bool)  # pitch, velocity, program, drum: hear what is drawn
    midiDropped = Signal(str)             # a .mid file dropped on the roll: open it

    MIN_PX_PER_TICK, MAX_PX_PER_TICK = 0.004, 2.0
    MIN_PX_PER_ROW, MAX_PX_PER_ROW = 4.0, 40.0

    def __init__(self, scene: PianoRollScene, parent=None) -> None:
        super().__init__(scene, parent)
        self.roll_scene = scene
        self.doc = scene.doc
        self.px_per_tick = 0.1    # 48 px per quarter note
        self.px_per_row = 14.0
        self.tool = Tool.DRAW
        self.draw_length = TICKS_PER_BEAT  # the last drawn or resized length, as DAWs do
        self.draw_velocity = 90
        self.draw_track: tuple[int | None, int, bool] = (None, 0, False)  # new notes' (track, program, drum)
        self._drag: dict | None = None
        self.context_actions: list = []  # the right-click menu (the window fills it: lock, regenerate...)
        self._erased = False
        self._rubber = QRubberBand(QRubberBand.Rectangle, self.viewport())
        self.setFrameShape(QFrame.NoFrame)
        self.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.setTransformationAnchor(QGraphicsView.NoAnchor)
        self.setResizeAnchor(QGraphicsView.NoAnchor)
        self.setCacheMode(QGraphicsView.CacheBackground)
        self.setViewportUpdateMode(QGraphicsView.MinimalViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.DontAdjustForAntialiasing, True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOn)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOn)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self._apply_transform()

    def sizeHint(self) -> QSize:
        return QSize(900, 500)

    # --- coordinates and zoom -------------------------------------------------------------
    def _apply_transform(self) -> None:
        self.setTransform(QTransform.fromScale(self.px_per_tick, self.px_per_row))
        self.resetCachedContent()
        self.zoomChanged.emit()

    def x_of_tick(self, tick: float) -> float:
        return tick * self.px_per_tick - self.horizontalScrollBar().value()

    def tick_at_x(self, x: float) -> float:
        return (x + self.horizontalScrollBar().value()) / self.px_per_tick

    def y_of_row(self, row: float) -> float:
        return row * self.px_per_row - self.verticalScrollBar().value()

    def visible_ticks(self) -> tuple[float, float]:
        return self.tick_at_x(0), self.tick_at_x(self.viewport().width())

    def set_zoom(self, px_per_tick: float | None = None, px_per_row: float | None = None,
                 anchor: QPointF | None = None) -> None:
        anchor = anchor or QPointF(self.viewport().width() / 2, self.viewport().height() / 2)
        before = self.mapToScene(anchor.toPoint())
        if px_per_tick is not None:
            self.px_per_tick = min(self.MAX_PX_PER_TICK, max(self.MIN_PX_PER_TICK, px_per_tick))
        if px_per_row is not None:
            self.px_per_row = min(self.MAX_PX_PER_ROW, max(self.MIN_PX_PER_ROW, px_per_row))
        self._apply_transform()
        after = self.mapFromScene(before)
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + after.x() - int(anchor.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + after.y() - int(anchor.y()))

    def center_on_pitch(self, pitch: int) -> None:
        self.verticalScrollBar().setValue(int((grid.row_of(pitch) + 0.5) * self.px_per_row
                                              - self.viewport().height() / 2))

    def scroll_to_tick(self, tick: float, margin: float = 0.1) -> None:
        self.horizontalScrollBar().setValue(int(tick * self.px_per_tick - self.viewport().width() * margin))

    def wheelEvent(self, event) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()  # Alt turns the wheel horizontal on some systems
        factor = 1.15 ** (delta / 120)
        pos = event.position()
        mods = event.modifiers()
        if mods & Qt.AltModifier or (mods & Qt.ControlModifier and mods & Qt.ShiftModifier):
            self.set_zoom(px_per_row=self.px_per_row * factor, anchor=pos)  # key height: Alt or Ctrl+Shift
        elif mods & Qt.ControlModifier:
            self.set_zoom(px_per_tick=self.px_per_tick * factor, anchor=pos)
        elif mods & Qt.ShiftModifier:
            bar = self.horizontalScrollBar()
            bar.setValue(bar.value() - delta)
        else:
            super().wheelEvent(event)

    # --- a .mid dropped on the roll opens it, as on the window (the scene would ignore it) ----------
    def dragEnterEvent(self, event) -> None:
        if midi_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if midi_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        paths = midi_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.midiDropped.emit(paths[0])
        else:
            super().dropEvent(event)

    # --- gestures -------------------------------------------------------------------------
    def _scene_pos(self, event) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def _near_right_edge(self, note: Note, x_view: float) -> bool:
        right = self.x_of_tick(note.end)
        width = note.duration * self.px_per_tick
        return right - min(EDGE_PX, width / 3) <= x_view <= right + 2

    def mousePressEvent(self, event) -> None:
        self.setFocus()
        pos = self._scene_pos(event)
        note_id = self.roll_scene.note_at(pos)
        mods = event.modifiers()
        if event.button() == Qt.RightButton:
            # on a note outside the selection: erase it; elsewhere: the menu (contextMenuEvent)
            self._erased = note_id is not None and note_id not in self.roll_scene.selected
            if self._erased:
                editing.delete(self.doc, [note_id])
            return
        if event.button() != Qt.LeftButton:
            return super().mousePressEvent(event)
        scene = self.roll_scene
        if note_id is not None:
            if mods & Qt.ShiftModifier:
                scene.set_selection(scene.selected ^ {note_id})
                if note_id not in scene.selected:
                    return
            elif note_id not in scene.selected:
                scene.set_selection({note_id})
            note = self.doc.note(note_id)
            if self._near_right_edge(note, event.position().x()):
                mode = "resize"
            elif mods & (Qt.ControlModifier | Qt.AltModifier):
                mode = "copy"
            else:
                mode = "move"
                self.auditionRequested.emit(note.pitch, note.velocity, note.program, note.drum)
            ids = sorted(scene.selected)
            self._drag = {"mode": mode, "origin": pos, "anchor": note, "ids": ids,
                          "notes": self.doc.notes(ids), "delta": (0, 0)}
            return
        if self.tool is Tool.SELECT or mods & (Qt.ShiftModifier | Qt.ControlModifier):
            if not mods & (Qt.ShiftModifier | Qt.ControlModifier):
                scene.set_selection(())
            self._drag = {"mode": "rubber", "origin": event.position().toPoint(), "base": set(scene.selected)}
            self._rubber.setGeometry(QRect(self._drag["origin"], QSize()))
            self._rubber.show()
            return
        # draw a new note, then drag to set its length
        scene.set_selection(())
        start = editing.snap_tick(self.doc, pos.x(), scene.snap, "floor")
        pitch = grid.pitch_at_row(pos.y())
        track, program, drum = self.draw_track
        note = Note(start, self.draw_length, pitch, self.draw_velocity, program, drum, track)
        item = QGraphicsRectItem(start, grid.row_of(pitch), note.duration, 1)
        scene._style(item, note, True)
        scene.addItem(item)
        self._drag = {"mode": "draw", "origin": pos, "note": note, "item": item}
        self.auditionRequested.emit(pitch, self.draw_velocity, program, drum)

    def context_menu(self) -> QMenu:
        menu = QMenu(self)
        menu.addActions(self.context_actions)
        return menu

    def contextMenuEvent(self, event) -> None:
        erased, self._erased = self._erased, False
        if erased and event.reason() == event.Reason.Mouse:
            return
        if self.context_actions:
            menu = self.context_menu()
            menu.setAttribute(Qt.WA_DeleteOnClose)
            menu.popup(event.globalPos())

    def mouseMoveEvent(self, event) -> None:
        drag = self._drag
        pos = self._scene_pos(event)
        if drag is None:
            note_id = self.roll_scene.note_at(pos)
            near = note_id is not None and self._near_right_edge(self.doc.note(note_id), event.position().x())
            self.viewport().setCursor(Qt.SizeHorCursor if near else
                                      Qt.OpenHandCursor if note_id is not None else Qt.ArrowCursor)
            return
        snap = self.roll_scene.snap
        mode = drag["mode"]
        if mode == "rubber":
            self._rubber.setGeometry(QRect(drag["origin"], event.position().toPoint()).normalized())
            rect = QRectF(self.mapToScene(drag["origin"]), pos).normalized()
            self.roll_scene.set_selection(drag["base"] | set(self.roll_scene.notes_in(rect)))
        elif mode == "draw":
            note = drag["note"]
            end = editing.snap_tick(self.doc, pos.x(), snap, "round")
            duration = max(end - note.start, snap or 1)
            drag["note"] = replace(note, duration=duration)
            drag["item"].setRect(note.start, grid.row_of(note.pitch), duration, 1)
        elif mode in ("move", "copy"):
            anchor = drag["anchor"]
            d_tick = editing.snap_tick(self.doc, anchor.start + pos.x() - drag["origin"].x(), snap) - anchor.start
            d_pitch = grid.pitch_at_row(pos.y()) - grid.pitch_at_row(drag["origin"].y())
            notes = drag["notes"]
            d_tick = max(d_tick, -min(n.start for n in notes))
            d_pitch = max(min(d_pitch, 127 - max(n.pitch for n in notes)), -min(n.pitch for n in notes))
            if (d_tick, d_pitch) != drag["delta"]:
                if d_pitch != drag["delta"][1]:
                    self.auditionRequested.emit(anchor.pitch + d_pitch, anchor.velocity, anchor.program, anchor.drum)
                drag["delta"] = (d_tick, d_pitch)
                for i, n in zip(drag["ids"], notes):
                    self.roll_scene.items_by_id[i].setRect(n.start + d_tick, grid.row_of(n.pitch + d_pitch),
                                                           n.duration, 1)
        elif mode == "resize":
            anchor = drag["anchor"]
            new_end = editing.snap_tick(self.doc, anchor.end + pos.x() - drag["origin"].x(), snap)
            d_dur = max(new_end, anchor.start + (snap or 1)) - anchor.end
            drag["delta"] = (d_dur, 0)
            for i, n in zip(drag["ids"], drag["notes"]):
                self.roll_scene.items_by_id[i].setRect(n.start, grid.row_of(n.pitch),
                                                       max(snap or 1, n.duration + d_dur), 1)

    def mouseReleaseEvent(self, event) -> None:
        drag, self._drag = self._drag, None
        if drag is None:
            return super().mouseReleaseEvent(event)
        mode = drag["mode"]
        scene = self.roll_scene
        if mode == "rubber":
            self._rubber.hide()
        elif mode == "draw":
            scene.removeItem(drag["item"])
            self.draw_length = drag["note"].duration
            ids = editing.add(self.doc, [drag["note"]], "Draw note")
            scene.set_selection(ids)
        elif mode == "move":
            editing.move(self.doc, drag["ids"], *drag["delta"])
        elif mode == "copy":
            for i, n in zip(drag["ids"], drag["notes"]):  # originals stay where they were
                scene.items_by_id[i].setRect(n.start, grid.row_of(n.pitch), n.duration, 1)
            if drag["delta"] != (0, 0):
                scene.set_selection(editing.duplicate(self.doc, drag["ids"], *drag["delta"]))
        elif mode == "resize":
            d_dur = drag["delta"][0]
            editing.resize(self.doc, drag["ids"], d_dur, scene.snap or 1)
            if d_dur:
                self.draw_length = max(scene.snap or 1, drag["anchor"].duration + d_dur)

    def keyPressEvent(self, event) -> None:
        ids = sorted(self.roll_scene.selected)
        key, mods = event.key(), event.modifiers()
        if ids and key in (Qt.Key_Up, Qt.Key_Down):
            step = 12 if mods & Qt.ShiftModifier else 1
            editing.transpose(self.doc, ids, step if key == Qt.Key_Up else -step)
        elif ids and key in (Qt.Key_Delete, Qt.Key_Backspace):
            editing.delete(self.doc, ids)
        elif ids and key in (Qt.Key_Left, Qt.Key_Right):
            step = self.roll_scene.snap or TICKS_PER_BEAT // 4
            editing.move(self.doc, ids, step if key == Qt.Key_Right else -step, 0)
        else:
            super().keyPressEvent(event)

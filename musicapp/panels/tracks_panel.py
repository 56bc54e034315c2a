"""The Tracks panel: one row per track of the piece (the tracks that hold notes, as the file is saved), with
its colour in the roll, its name (editable), its instrument (a GM program), and mute / solo for playback.

Selecting a row selects the track's notes in the roll, and the notes drawn next go to that track. Renaming
and changing the instrument are undoable edits of the document; mute and solo are how it plays, not part of
the file (no undo step, cleared when another piece is opened). Which track a note is in, what plays under
mute and solo, and what an instrument change rewrites are core.tracks' rules; this widget only shows them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Hashable

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
                               QToolButton, QVBoxLayout, QWidget)

from core import tracks as track_rules
from core.score import GM_PROGRAM_NAMES, Score, Track
from musicapp.commands import ChangeNotes, SetTracks
from musicapp.document import NoteDocument
from musicapp.pianoroll import grid

COLOUR, NAME, INSTRUMENT, MUTE, SOLO = range(5)


@dataclass
class TrackRow:
    key: Hashable      # core.tracks.track_keys: the index of a document track, else ("new", program, drum)
    index: int         # the track's index in the saved piece
    track: Track       # with its notes
    note_ids: list[int]
    colour: QColor

    @property
    def is_new(self) -> bool:
        """Only the home of notes that name no track (the model's): it becomes a document track on an edit."""
        return not isinstance(self.key, int)


class TracksPanel(QWidget):
    mixChanged = Signal()   # mute or solo changed: what plays is different
    message = Signal(str, str)  # (text, level) for the window's message bar

    def __init__(self, doc: NoteDocument, roll, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.roll = doc, roll
        self.rows: list[TrackRow] = []
        self.muted: set[Hashable] = set()
        self.soloed: set[Hashable] = set()
        self._home: dict[int, int] = {}  # note id -> index of the track it is saved in
        self._looks: dict[int, tuple] = {}  # note id -> (track, program, drum), to tell when rows need redoing

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["", "Track", "Instrument", "M", "S"])
        self.table.horizontalHeaderItem(MUTE).setToolTip("Mute: the track does not play")
        self.table.horizontalHeaderItem(SOLO).setToolTip("Solo: only the soloed tracks play")
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed
                                   | QAbstractItemView.SelectedClicked)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COLOUR, QHeaderView.Fixed)
        header.setSectionResizeMode(NAME, QHeaderView.Stretch)
        header.setSectionResizeMode(INSTRUMENT, QHeaderView.ResizeToContents)
        for column in (MUTE, SOLO):
            header.setSectionResizeMode(column, QHeaderView.Fixed)
            self.table.setColumnWidth(column, 30)
        self.table.setColumnWidth(COLOUR, 26)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.hint = QLabel("Select a track to select its notes; notes you draw then go to it. "
                           "Double-click a name to rename it.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #8a8f99;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.hint)

        self._timer = QTimer(self)  # one refresh after a burst of edits (a macro sends many signals)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.refresh)
        doc.documentReset.connect(self._on_reset)
        doc.notesAdded.connect(self._schedule)
        doc.notesRemoved.connect(self._schedule)
        doc.notesChanged.connect(self._on_notes_changed)
        doc.tracksChanged.connect(self._schedule)
        self.refresh()

    # --- what plays ---------------------------------------------------------------------------
    def audible(self, score: Score) -> Score:
        """`score` (the document as it plays, its tracks in the saved order) without the silent tracks' notes."""
        if not self.muted and not self.soloed:
            return score
        return track_rules.audible_score(score, self.muted, self.soloed, len(self.doc.tracks))

    def set_muted(self, row: int, on: bool) -> None:
        self._set_flag(self.muted, row, on)

    def set_soloed(self, row: int, on: bool) -> None:
        self._set_flag(self.soloed, row, on)

    def _set_flag(self, flags: set, row: int, on: bool) -> None:
        key = self.rows[row].key
        if (key in flags) == on:
            return
        (flags.add if on else flags.discard)(key)
        self._show_flags()
        self.mixChanged.emit()

    # --- rows ---------------------------------------------------------------------------------
    def _schedule(self, *_) -> None:
        self._timer.start()

    def _on_notes_changed(self, ids: list[int]) -> None:
        # moving and resizing leave the rows as they are: redo them only when a note changed track or sound
        if any(self._looks.get(i) != _look(self.doc.note(i)) for i in ids):
            self._schedule()

    def _on_reset(self) -> None:
        mixed = bool(self.muted or self.soloed)
        self.muted.clear()
        self.soloed.clear()
        self.table.clearSelection()
        self.refresh()
        if mixed:
            self.mixChanged.emit()

    def refresh(self) -> None:
        """Rows from the document: every track that holds notes, in the order of the saved file."""
        self._timer.stop()
        doc = self.doc
        piece, self._home = track_rules.assign(doc.tracks, dict(doc.items()))
        self._looks = {i: (n.track, n.program, n.drum) for i, n in doc.items()}
        tracks = piece.tracks(include_empty=True)
        keys = track_rules.track_keys(piece, len(doc.tracks))
        members: dict[int, list[int]] = {}
        for note_id, index in self._home.items():
            members.setdefault(index, []).append(note_id)
        used = [i for i, t in enumerate(tracks) if t.notes]
        colours = grid.track_colours((i, tracks[i].program, tracks[i].drum) for i in used)
        selected = self.selected_row()
        was = self.rows[selected].key if selected is not None else None
        self.rows = [TrackRow(keys[i], i, tracks[i], sorted(members.get(i, [])), colours[i]) for i in used]
        present = {r.key for r in self.rows}
        self.muted &= present
        self.soloed &= present
        # notes that name their track take its colour; the others keep their instrument's (the first track's)
        self.roll.scene.set_track_colours({r.index: r.colour for r in self.rows if not r.is_new})
        with QSignalBlocker(self.table):
            for r in range(len(self.rows), self.table.rowCount()):  # rows that go: their widgets with them
                for column in (INSTRUMENT, MUTE, SOLO):
                    if self.table.cellWidget(r, column) is not None:
                        self.table.cellWidget(r, column).hide()
            self.table.setRowCount(len(self.rows))
            for r, row in enumerate(self.rows):
                self._fill(r, row)
            again = next((r for r, row in enumerate(self.rows) if row.key == was), None)
            if again is None:
                self.table.clearSelection()
            else:
                self.table.selectRow(again)
        self._show_flags()
        self._update_draw_track()

    def _fill(self, r: int, row: TrackRow) -> None:
        swatch = QPixmap(14, 14)
        swatch.fill(row.colour)
        colour = QTableWidgetItem(QIcon(swatch), "")
        colour.setData(Qt.UserRole, row.colour.name())
        colour.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable)
        colour.setToolTip("The track's colour in the roll")
        self.table.setItem(r, COLOUR, colour)
        name = QTableWidgetItem(row.track.name)
        name.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsEditable)
        channel = "" if row.track.channel is None else f", MIDI channel {row.track.channel + 1}"
        name.setToolTip(f"{row.track.label}: {len(row.note_ids)} notes{channel}")
        self.table.setItem(r, NAME, name)
        # the widgets stay while the row is the same track (a refresh after every edit must not rebuild them)
        box = self._cell_widget(r, INSTRUMENT, row)
        if box is None:
            box = QComboBox()
            if row.track.drum:
                box.addItem("Drums", -1)
                box.setEnabled(False)
            else:
                for program, label in enumerate(GM_PROGRAM_NAMES):
                    box.addItem(f"{program + 1} {label}", program)
            box.setToolTip("The track's instrument (General MIDI program)")
            box.activated.connect(lambda i, box=box, key=row.key: self._on_instrument(key, box.itemData(i)))
            self._set_cell_widget(r, INSTRUMENT, row, box)
        if not row.track.drum and box.currentIndex() != row.track.program:
            with QSignalBlocker(box):
                box.setCurrentIndex(row.track.program)
        for column, text, tip, flag in ((MUTE, "M", "Mute", self.set_muted), (SOLO, "S", "Solo", self.set_soloed)):
            button = self._cell_widget(r, column, row)
            if button is None:
                button = QToolButton()
                button.setText(text)
                button.setCheckable(True)
                button.setStyleSheet("QToolButton:checked { background: %s; color: #111; font-weight: bold; }"
                                     % ("#e0a030" if column == MUTE else "#60c060"))
                button.toggled.connect(lambda on, key=row.key, flag=flag: flag(self._row_of(key), on))
                self._set_cell_widget(r, column, row, button)
            button.setToolTip(f"{tip} {row.track.label}")

    def _cell_widget(self, r: int, column: int, row: TrackRow):
        """The cell's widget if it was made for this track (same key, same kind of instrument), else None."""
        widget = self.table.cellWidget(r, column)
        if widget is not None and widget.property("track") == repr((row.key, row.track.drum)):
            return widget
        return None

    def _set_cell_widget(self, r: int, column: int, row: TrackRow, widget: QWidget) -> None:
        old = self.table.cellWidget(r, column)
        if old is not None:
            old.hide()  # Qt deletes it later; until then it must not show over the new rows
        widget.setProperty("track", repr((row.key, row.track.drum)))
        self.table.setCellWidget(r, column, widget)

    def _show_flags(self) -> None:
        for r, row in enumerate(self.rows):
            for column, flags in ((MUTE, self.muted), (SOLO, self.soloed)):
                button = self.table.cellWidget(r, column)
                if button is not None and button.isChecked() != (row.key in flags):
                    with QSignalBlocker(button):
                        button.setChecked(row.key in flags)
            silent = not track_rules.is_audible(row.key, self.muted, self.soloed)
            item = self.table.item(r, NAME)
            if item is not None:
                with QSignalBlocker(self.table):
                    item.setForeground(QColor("#6b6f78") if silent else self.palette().text().color())

    def _row_of(self, key: Hashable) -> int:
        return next(r for r, row in enumerate(self.rows) if row.key == key)

    def selected_row(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows and rows[0].row() < len(self.rows) else None

    def select_row(self, row: int | None) -> None:
        if row is None:
            self.table.clearSelection()
        else:
            self.table.selectRow(row)

    def _on_row_selected(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.roll.scene.set_selection(self.rows[row].note_ids)
        self._update_draw_track()

    def _update_draw_track(self) -> None:
        """Notes drawn in the roll go to the selected track (a new instrument track: to its instrument)."""
        row = self.selected_row()
        if row is None:
            self.roll.view.draw_track = (None, 0, False)
            return
        r = self.rows[row]
        self.roll.view.draw_track = (None if r.is_new else r.index, r.track.program, r.track.drum)

    # --- edits (undoable) -------------------------------------------------------------------
    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == NAME and item.row() < len(self.rows):
            self.rename(item.row(), item.text())

    def rename(self, row: int, name: str) -> None:
        r = self.rows[row]
        name = name.strip()
        if name == r.track.name:
            return self.refresh()
        piece, home = track_rules.assign(self.doc.tracks, dict(self.doc.items()))
        tracks = piece.tracks(include_empty=True)
        tracks[r.index] = replace(tracks[r.index].copy(), name=name)
        self._edit(f"Rename track to {name or tracks[r.index].label}", tracks, home)

    def _on_instrument(self, key: Hashable, program: int) -> None:
        row = self._row_of(key)
        if program is not None and program >= 0 and program != self.rows[row].track.program:
            self.set_instrument(row, program)

    def set_instrument(self, row: int, program: int) -> None:
        r = self.rows[row]
        piece, home = track_rules.assign(self.doc.tracks, dict(self.doc.items()))
        try:
            tracks = track_rules.set_program(piece.tracks(include_empty=True), r.index, program)
        except ValueError as e:
            self.message.emit(f"Cannot change the instrument: {e}", "warning")
            return self.refresh()
        self._edit(f"{r.track.label}: {GM_PROGRAM_NAMES[program]}", tracks, home,
                   {i: program for i in r.note_ids})

    def _edit(self, text: str, tracks: list[Track], home: dict[int, int],
              programs: dict[int, int] | None = None) -> None:
        """One undo step: the tracks as given (the model's new tracks become document tracks), each note naming
        the track it is saved in, and the new programs of the notes in `programs`."""
        doc = self.doc
        before = len(doc.tracks)
        programs = programs or {}
        notes = {}
        for i, n in doc.items():
            new = replace(n, track=home[i], program=programs.get(i, n.program))
            if (new.track, new.program) != (n.track, n.program):
                notes[i] = new
        stack = doc.undo_stack
        stack.beginMacro(text)
        stack.push(SetTracks(doc, tracks, text))
        if notes:
            stack.push(ChangeNotes(doc, notes, text))
        stack.endMacro()
        # a mute or solo of a new track follows it into the document's tracks
        for r in self.rows:
            if r.is_new and before <= r.index < len(tracks):
                for flags in (self.muted, self.soloed):
                    if r.key in flags:
                        flags.discard(r.key)
                        flags.add(r.index)
        self.refresh()


def _look(n) -> tuple:
    return (n.track, n.program, n.drum)

"""The document the piano roll edits: notes with stable ids, the tempo map and meter, and the
pending continuation (the "preview") that is shown in its own colour until it is accepted.

It lives outside the graphics scene so that edits, undo and tests never depend on drawing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from core.score import Note, Score, TempoChange, TimeSignature


@dataclass
class Preview:
    """Continuation notes per variation; `current` is the variation the user sees and hears."""
    variations: dict[int, list[Note]] = field(default_factory=dict)
    current: int = 0
    start_tick: int = 0

    def copy(self) -> "Preview":
        return Preview({k: [replace(n) for n in v] for k, v in self.variations.items()},
                       self.current, self.start_tick)

    @property
    def notes(self) -> list[Note]:
        return self.variations.get(self.current, [])

    def is_empty(self) -> bool:
        return not any(self.variations.values())


class NoteDocument(QObject):
    notesAdded = Signal(list)       # ids
    notesRemoved = Signal(list)     # ids
    notesChanged = Signal(list)     # ids
    documentReset = Signal()        # everything replaced (open, new)
    previewChanged = Signal()       # preview replaced or variation switched
    previewNoteAdded = Signal(int, object)  # (variation, Note) while a continuation streams

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._notes: dict[int, Note] = {}
        self._next_id = 1
        self.meta = Score()  # tempo map and meter only; its notes list stays empty
        self.preview = Preview()
        self.path: str | None = None
        self.undo_stack = QUndoStack(self)

    # --- reading --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._notes)

    def note(self, note_id: int) -> Note:
        return self._notes[note_id]

    def ids(self) -> list[int]:
        return list(self._notes)

    def items(self):
        return self._notes.items()

    def notes(self, ids=None) -> list[Note]:
        if ids is None:
            return list(self._notes.values())
        return [self._notes[i] for i in ids]

    @property
    def end_tick(self) -> int:
        return max((n.end for n in self._notes.values()), default=0)

    def to_score(self, include_preview: bool = False) -> Score:
        notes = [replace(n) for n in self._notes.values()]
        if include_preview:
            notes += [replace(n) for n in self.preview.notes]
        return Score(notes, list(self.meta.tempos), list(self.meta.time_signatures))

    # --- whole-document changes (not undoable: opening a file starts a new history) ----------
    def load_score(self, score: Score, path: str | None = None) -> None:
        self._notes = {}
        self._next_id = 1
        for n in score.notes:
            self._notes[self._next_id] = replace(n)
            self._next_id += 1
        self.meta = Score([], list(score.tempos), list(score.time_signatures))
        self.preview = Preview()
        self.path = path
        self.undo_stack.clear()
        self.documentReset.emit()

    def set_meter_and_tempo(self, tempos: list[TempoChange], time_signatures: list[TimeSignature]) -> None:
        self.meta = Score([], list(tempos), list(time_signatures))
        self.documentReset.emit()

    # --- primitive edits, called only by undo commands ---------------------------------------
    def insert(self, notes_by_id: dict[int, Note]) -> None:
        for i, n in notes_by_id.items():
            self._notes[i] = replace(n)
            self._next_id = max(self._next_id, i + 1)
        self.notesAdded.emit(list(notes_by_id))

    def allocate_ids(self, count: int) -> list[int]:
        ids = list(range(self._next_id, self._next_id + count))
        self._next_id += count
        return ids

    def remove(self, ids) -> None:
        ids = [i for i in ids if i in self._notes]
        for i in ids:
            del self._notes[i]
        self.notesRemoved.emit(ids)

    def update(self, notes_by_id: dict[int, Note]) -> None:
        for i, n in notes_by_id.items():
            self._notes[i] = replace(n)
        self.notesChanged.emit(list(notes_by_id))

    def set_preview(self, preview: Preview) -> None:
        self.preview = preview.copy()
        self.previewChanged.emit()

    # --- streaming (not undoable while it runs; the finished stream becomes one command) --------
    def begin_stream(self, start_tick: int) -> None:
        self.preview = Preview({}, 0, start_tick)
        self.previewChanged.emit()

    def stream_note(self, variation: int, note: Note) -> None:
        self.preview.variations.setdefault(variation, []).append(replace(note))
        self.previewNoteAdded.emit(variation, note)

"""The document the piano roll edits: notes with stable ids, the tracks they belong to (names, channels,
programs and every other event of the file, which pass through unchanged), the tempo map and meter, and the
pending continuation (the "preview") that is shown in its own colour until it is accepted.

It lives outside the graphics scene so that edits, undo and tests never depend on drawing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from core import arrange, idiom
from core.score import Note, Score, TempoChange, TimeSignature, Track

PREVIEW_COMMAND_ID = 1001  # QUndoCommand.id() of commands that only show, switch or drop the preview
LOCK_COMMAND_ID = 1002  # ... that only lock or unlock notes (not saved: the file does not change)


@dataclass
class Preview:
    """Continuation notes per variation; `current` is the variation the user sees and hears."""
    variations: dict[int, list[Note]] = field(default_factory=dict)
    current: int = 0
    start_tick: int = 0
    end_tick: int | None = None  # end of the bars it fills (None: the bar line after its last note)
    # Regenerated bars: ids of the notes the shown ones replace (None: a continuation, placed as
    # NoteDocument.placement says). An added part: the new track its notes go to.
    replaced: list[int] | None = None
    part: Track | None = None

    def copy(self) -> "Preview":
        return Preview({k: [replace(n) for n in v] for k, v in self.variations.items()},
                       self.current, self.start_tick, self.end_tick,
                       None if self.replaced is None else list(self.replaced),
                       None if self.part is None else self.part.copy(notes=False))

    @property
    def in_place(self) -> bool:
        """Regenerated bars or an added part: accepting moves nothing (as opposed to a continuation)."""
        return self.replaced is not None or self.part is not None

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
    metaChanged = Signal()          # tempo map or meter changed by an edit
    tracksChanged = Signal()        # a track's name, instrument or events changed by an edit
    modifiedChanged = Signal(bool)  # the piece differs from the file (a preview alone does not count)
    previewChanged = Signal()       # preview replaced or variation switched
    previewNoteAdded = Signal(int, object)  # (variation, Note) while a continuation streams
    lockedChanged = Signal(list)    # ids of notes locked or unlocked

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._notes: dict[int, Note] = {}
        self._next_id = 1
        self.meta = Score()  # tempo map and meter only; its notes list stays empty
        # The piece's tracks without their notes; each note names its track (Note.track). Notes that name
        # none (the model's, a new instrument's) go to a track of their instrument when the piece is saved.
        self.tracks: list[Track] = []
        self.preview = Preview()
        self.locked: set[int] = set()  # notes that regenerating bars keeps (ids; not saved in the file)
        self.placement = arrange.INSERT  # what accepting the preview does to the notes after its start
        self.path: str | None = None
        self.undo_stack = QUndoStack(self)
        self._modified = False
        self.undo_stack.indexChanged.connect(self._check_modified)
        self.undo_stack.cleanChanged.connect(self._check_modified)

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
        """The piece; with `include_preview`, as it will be once the shown continuation is accepted."""
        score = Score([replace(n) for n in self._notes.values()], list(self.meta.tempos),
                      list(self.meta.time_signatures), tracks=[t.copy(notes=False) for t in self.tracks])
        if include_preview and self.preview.notes:
            if self.preview.in_place:
                return self._with_in_place_preview()
            start, end = self.preview_region()
            score = arrange.placed_score(score, self.preview.notes, start, end, self.placement)
        return score

    def _with_in_place_preview(self) -> Score:
        """The piece with regenerated bars or an added part in place (as accepting it would make it)."""
        p, tracks = self.preview, [t.copy(notes=False) for t in self.tracks]
        gone = set(p.replaced or ())
        notes = [replace(n) for i, n in self._notes.items() if i not in gone]
        if p.part is not None:
            tracks.append(p.part.copy(notes=False))
            new = idiom.shape_part([replace(n, track=len(tracks) - 1) for n in p.notes], p.part.instrument)
        else:
            start, end = self.preview_region()
            new = arrange.home_tracks(notes, [self._notes[i] for i in gone if i in self._notes], p.notes, start, end)
        return Score(notes + new, list(self.meta.tempos), list(self.meta.time_signatures), tracks=tracks)

    def preview_region(self) -> tuple[int, int]:
        """The bars [start, end) the pending continuation fills."""
        p = self.preview
        if p.end_tick is not None:
            return p.start_tick, max(p.start_tick, p.end_tick)
        last = max((n.start for v in p.variations.values() for n in v), default=p.start_tick - 1)
        return p.start_tick, max(p.start_tick, arrange.bar_line_at_or_after(self.meta, last + 1))

    def has_region(self) -> bool:
        """A continuation is shown or streaming (its bars are known once the stream opens)."""
        return not self.preview.is_empty() or self.preview.end_tick is not None

    def placement_plan(self) -> arrange.Placement:
        """What accepting the pending continuation would do to the piece's notes (keys: note ids)."""
        if not self.has_region() or self.preview.in_place:  # regenerated bars replace only what they name
            return arrange.Placement(removed=[i for i in self.preview.replaced or () if i in self._notes],
                                     tempos=list(self.meta.tempos), time_signatures=list(self.meta.time_signatures))
        start, end = self.preview_region()
        return arrange.place_continuation(self._notes, self.meta, start, end, self.placement)

    def set_placement(self, mode: str) -> None:
        """Insert or replace on accept: a setting, not an edit (no undo step); the roll shows its effect."""
        if mode not in arrange.PLACEMENTS:
            raise ValueError(f"unknown placement {mode!r}")
        if mode != self.placement:
            self.placement = mode
            self.previewChanged.emit()

    # --- modified: the notes or the tempo/meter differ from the file; showing a preview does not count ---
    def is_modified(self) -> bool:
        stack = self.undo_stack
        clean, index = stack.cleanIndex(), stack.index()
        if clean < 0:
            return True
        return any(not _only_preview(stack.command(i)) for i in range(min(clean, index), max(clean, index)))

    def _check_modified(self, *_) -> None:
        modified = self.is_modified()
        if modified != self._modified:
            self._modified = modified
            self.modifiedChanged.emit(modified)

    # --- whole-document changes (not undoable: opening a file starts a new history) ----------
    def load_score(self, score: Score, path: str | None = None) -> None:
        self._notes = {}
        self._next_id = 1
        for n in score.document_notes():  # as the file has them (the pedal not folded in), each naming its track
            self._notes[self._next_id] = n
            self._next_id += 1
        self.tracks = score.skeleton()
        self.meta = Score([], list(score.tempos), list(score.time_signatures))
        self.preview = Preview()
        self.locked = set()
        self.path = path
        self.undo_stack.clear()
        self.documentReset.emit()
        self._check_modified()

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

    def replace_tracks(self, tracks: list[Track]) -> None:
        """The tracks' events changed by an edit (undo commands only): inserting bars moves the later ones."""
        self.tracks = [t.copy(notes=False) for t in tracks]
        self.tracksChanged.emit()

    def replace_meta(self, tempos: list[TempoChange], time_signatures: list[TimeSignature]) -> None:
        """Tempo map and meter changed by an edit (undo commands only); the notes stay."""
        self.meta = Score([], list(tempos), list(time_signatures))
        self.metaChanged.emit()

    def set_locked(self, ids, locked: bool) -> None:
        """Lock or unlock notes (undo commands only)."""
        ids = list(ids)
        (self.locked.update if locked else self.locked.difference_update)(ids)
        self.lockedChanged.emit(ids)

    def locked_ids(self) -> list[int]:
        """The locked notes that are in the piece (a deleted note keeps its lock for an undo)."""
        return sorted(i for i in self.locked if i in self._notes)

    def set_preview_region(self, start_tick: int, end_tick: int | None) -> None:
        """Where the streaming continuation really goes (known once the stream opens)."""
        self.preview.start_tick, self.preview.end_tick = start_tick, end_tick
        self.previewChanged.emit()

    def set_preview(self, preview: Preview) -> None:
        self.preview = preview.copy()
        self.previewChanged.emit()

    # --- streaming (not undoable while it runs; the finished stream becomes one command) --------
    def begin_stream(self, start_tick: int, replaced: list[int] | None = None, part: Track | None = None) -> None:
        self.preview = Preview({}, 0, start_tick, replaced=replaced, part=part)
        self.previewChanged.emit()

    def stream_note(self, variation: int, note: Note) -> None:
        self.preview.variations.setdefault(variation, []).append(replace(note))
        self.previewNoteAdded.emit(variation, note)


def _only_preview(command) -> bool:
    """True for an undo step (or macro) that only shows, switches or drops the continuation."""
    if command is None:
        return False
    if command.childCount():
        return all(_only_preview(command.child(i)) for i in range(command.childCount()))
    return command.id() in (PREVIEW_COMMAND_ID, LOCK_COMMAND_ID)

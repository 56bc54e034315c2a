"""Undo commands: every edit of the document goes through one of these."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtGui import QUndoCommand

from core import arrange, idiom
from core.score import Note, TempoChange, TimeSignature, Track
from musicapp.document import LOCK_COMMAND_ID, PREVIEW_COMMAND_ID, NoteDocument, Preview


class AddNotes(QUndoCommand):
    def __init__(self, doc: NoteDocument, notes: list[Note], text: str = "Add notes") -> None:
        super().__init__(text)
        self.doc = doc
        self.ids = doc.allocate_ids(len(notes))
        self.notes = {i: replace(n) for i, n in zip(self.ids, notes)}

    def redo(self) -> None:
        self.doc.insert(self.notes)

    def undo(self) -> None:
        self.doc.remove(self.ids)


class RemoveNotes(QUndoCommand):
    def __init__(self, doc: NoteDocument, ids, text: str = "Delete notes") -> None:
        super().__init__(text)
        self.doc = doc
        self.notes = {i: replace(doc.note(i)) for i in ids}

    def redo(self) -> None:
        self.doc.remove(list(self.notes))

    def undo(self) -> None:
        self.doc.insert(self.notes)


class ChangeNotes(QUndoCommand):
    """Replace notes by new values (move, resize, transpose, velocity)."""

    def __init__(self, doc: NoteDocument, new_by_id: dict[int, Note], text: str = "Edit notes") -> None:
        super().__init__(text)
        self.doc = doc
        self.old = {i: replace(doc.note(i)) for i in new_by_id}
        self.new = {i: replace(n) for i, n in new_by_id.items()}

    def redo(self) -> None:
        self.doc.update(self.new)

    def undo(self) -> None:
        self.doc.update(self.old)


class SetPreview(QUndoCommand):
    """Show, switch, or discard the pending continuation.

    `already_applied` is for a stream that has filled the preview live: the first redo is then a no-op.
    """

    def __init__(self, doc: NoteDocument, old: Preview, new: Preview, text: str,
                 already_applied: bool = False) -> None:
        super().__init__(text)
        self.doc = doc
        self.old, self.new = old.copy(), new.copy()
        self._skip_first_redo = already_applied

    def redo(self) -> None:
        if self._skip_first_redo:
            self._skip_first_redo = False
            return
        self.doc.set_preview(self.new)

    def undo(self) -> None:
        self.doc.set_preview(self.old)

    def id(self) -> int:  # lets the document tell a preview-only step from an edit of the piece
        return PREVIEW_COMMAND_ID


META_COMMAND_ID = 1003


class SetMeta(QUndoCommand):
    """Replace the tempo map and meter (inserting bars moves the changes after them)."""

    def __init__(self, doc: NoteDocument, tempos: list[TempoChange], time_signatures: list[TimeSignature],
                 text: str = "Tempo and meter", merge_key=None) -> None:
        super().__init__(text)
        self.doc = doc
        self.old = (list(doc.meta.tempos), list(doc.meta.time_signatures))
        self.new = (list(tempos), list(time_signatures))
        self.merge_key = merge_key  # edits in a row of one field at one bar (arrow clicks) undo as one

    def redo(self) -> None:
        self.doc.replace_meta(*self.new)

    def undo(self) -> None:
        self.doc.replace_meta(*self.old)

    def id(self) -> int:
        return META_COMMAND_ID if self.merge_key is not None else -1

    def mergeWith(self, other) -> bool:
        if getattr(other, "merge_key", None) != self.merge_key:
            return False
        self.new = other.new
        return True


class SetTracks(QUndoCommand):
    """Replace the tracks' names, channels and events (inserting bars moves the events after them)."""

    def __init__(self, doc: NoteDocument, tracks: list[Track], text: str = "Move events") -> None:
        super().__init__(text)
        self.doc = doc
        self.old = [t.copy(notes=False) for t in doc.tracks]
        self.new = [t.copy(notes=False) for t in tracks]

    def redo(self) -> None:
        self.doc.replace_tracks(self.new)

    def undo(self) -> None:
        self.doc.replace_tracks(self.old)


class LockNotes(QUndoCommand):
    """Lock or unlock notes: regenerating their bars keeps them. Not part of the file."""

    def __init__(self, doc: NoteDocument, ids, locked: bool) -> None:
        super().__init__("Lock notes" if locked else "Unlock notes")
        self.doc, self.locked = doc, locked
        self.ids = [i for i in ids if (i in doc.locked) != locked]

    def redo(self) -> None:
        self.doc.set_locked(self.ids, self.locked)

    def undo(self) -> None:
        self.doc.set_locked(self.ids, not self.locked)

    def id(self) -> int:
        return LOCK_COMMAND_ID


def toggle_lock(doc: NoteDocument, ids) -> bool | None:
    """Lock the notes, or unlock them when all are locked already; one undo step. Returns the new state
    (None: no notes)."""
    ids = list(ids)
    if not ids:
        return None
    locked = not all(i in doc.locked for i in ids)
    doc.undo_stack.push(LockNotes(doc, ids, locked))
    return locked


def _accept_in_place(doc: NoteDocument) -> None:
    """Regenerated bars replace the notes they were made for; an added part becomes a new track."""
    preview, stack = doc.preview, doc.undo_stack
    removed = [i for i in preview.replaced or () if i in doc.ids()]
    stack.beginMacro("Accept part" if preview.part is not None else "Accept regenerated bars")
    if preview.part is not None:
        stack.push(SetTracks(doc, doc.tracks + [preview.part], "Add track"))
        notes = idiom.shape_part([replace(n, track=len(doc.tracks) - 1) for n in preview.notes],
                                 preview.part.instrument)
    else:
        gone = set(removed)
        start, end = doc.preview_region()
        notes = arrange.home_tracks([n for i, n in doc.items() if i not in gone], doc.notes(removed),
                                    preview.notes, start, end)
    if removed:
        stack.push(RemoveNotes(doc, removed, "Replace notes"))
    stack.push(AddNotes(doc, notes, "Accept notes"))
    stack.push(SetPreview(doc, preview, Preview(), "Clear preview"))
    stack.endMacro()


def accept_preview(doc: NoteDocument) -> None:
    """Make the shown variation part of the piece, placed as `doc.placement` says (insert: the notes
    after its start move later by its bars; replace: the notes in its bars go), as one undo step.
    Regenerated bars replace just the notes they were made for; an added part becomes a new track."""
    if doc.preview.is_empty():
        return
    if doc.preview.in_place:
        return _accept_in_place(doc)
    plan = doc.placement_plan()
    stack = doc.undo_stack
    stack.beginMacro("Accept continuation")
    if plan.removed:
        stack.push(RemoveNotes(doc, plan.removed, "Replace notes"))
    if plan.moved:
        stack.push(ChangeNotes(doc, plan.moved, "Make room"))
    if plan.meta_changed:
        stack.push(SetMeta(doc, plan.tempos, plan.time_signatures))
    if plan.events_shift is not None:
        tracks = arrange.shifted_tracks(doc.tracks, *plan.events_shift)
        if [(t.events, t.end) for t in tracks] != [(t.events, t.end) for t in doc.tracks]:
            stack.push(SetTracks(doc, tracks))
    # Each of the model's notes goes to the track whose part it continues (a new one for a new instrument).
    start = doc.preview_region()[0]
    new = arrange.home_tracks([n for n in doc.notes() if n.start < start], (), doc.preview.notes, start)
    stack.push(AddNotes(doc, new, "Accept continuation"))
    stack.push(SetPreview(doc, doc.preview, Preview(), "Clear continuation"))
    stack.endMacro()


def reject_preview(doc: NoteDocument) -> None:
    if not doc.preview.is_empty():
        doc.undo_stack.push(SetPreview(doc, doc.preview, Preview(), "Reject continuation"))


def pick_variation(doc: NoteDocument, index: int) -> None:
    if index == doc.preview.current or index not in doc.preview.variations:
        return
    new = doc.preview.copy()
    new.current = index
    doc.undo_stack.push(SetPreview(doc, doc.preview, new, f"Pick variation {index + 1}"))

"""Edit operations on a selection of note ids, each one undoable command (or none if nothing changes)."""
from __future__ import annotations

from dataclasses import replace

from core import arrange
from core.score import Note, TICKS_PER_BEAT
from musicapp.commands import AddNotes, ChangeNotes, RemoveNotes
from musicapp.document import NoteDocument

# Snap choices as (label, ticks); 0 means no snap. Triplets divide the straight value by 3/2.
SNAP_CHOICES = [
    ("1/4", TICKS_PER_BEAT), ("1/8", TICKS_PER_BEAT // 2), ("1/16", TICKS_PER_BEAT // 4),
    ("1/32", TICKS_PER_BEAT // 8), ("1/4 T", TICKS_PER_BEAT * 2 // 3), ("1/8 T", TICKS_PER_BEAT // 3),
    ("1/16 T", TICKS_PER_BEAT // 6), ("1/32 T", TICKS_PER_BEAT // 12), ("Off", 0),
]


def snap_tick(doc: NoteDocument, tick: float, grid: int, mode: str = "round") -> int:
    """Snap to the grid counted from the start of the bar `tick` lies in (core.arrange holds the rule)."""
    return arrange.snap_tick(doc.meta, tick, grid, mode)


def clamp_pitch(p: int) -> int:
    return min(127, max(0, p))


def delete(doc: NoteDocument, ids) -> None:
    ids = [i for i in ids]
    if ids:
        doc.undo_stack.push(RemoveNotes(doc, ids))


def move(doc: NoteDocument, ids, d_tick: int, d_pitch: int, text: str = "Move notes") -> None:
    notes = doc.notes(ids)
    if not notes or (d_tick == 0 and d_pitch == 0):
        return
    d_tick = max(d_tick, -min(n.start for n in notes))  # never before the start of the piece
    d_pitch = max(min(d_pitch, 127 - max(n.pitch for n in notes)), -min(n.pitch for n in notes))
    if d_tick == 0 and d_pitch == 0:
        return
    doc.undo_stack.push(ChangeNotes(doc, {i: replace(n, start=n.start + d_tick, pitch=n.pitch + d_pitch)
                                          for i, n in zip(ids, notes)}, text))


def transpose(doc: NoteDocument, ids, semitones: int) -> None:
    move(doc, ids, 0, semitones, "Transpose")


def resize(doc: NoteDocument, ids, d_duration: int, min_duration: int = 1) -> None:
    notes = doc.notes(ids)
    if not notes or d_duration == 0:
        return
    doc.undo_stack.push(ChangeNotes(doc, {i: replace(n, duration=max(min_duration, n.duration + d_duration))
                                          for i, n in zip(ids, notes)}, "Resize notes"))


def set_velocities(doc: NoteDocument, velocities: dict[int, int]) -> None:
    new = {i: replace(doc.note(i), velocity=min(127, max(1, v))) for i, v in velocities.items()
           if doc.note(i).velocity != v}
    if new:
        doc.undo_stack.push(ChangeNotes(doc, new, "Velocity"))


def add(doc: NoteDocument, notes: list[Note], text: str = "Add notes") -> list[int]:
    if not notes:
        return []
    cmd = AddNotes(doc, notes, text)
    doc.undo_stack.push(cmd)
    return cmd.ids


def duplicate(doc: NoteDocument, ids, d_tick: int | None = None, d_pitch: int = 0) -> list[int]:
    """Copies of the notes; by default placed right after the selection ends."""
    notes = doc.notes(ids)
    if not notes:
        return []
    if d_tick is None:
        d_tick = max(n.end for n in notes) - min(n.start for n in notes)
    return add(doc, [replace(n, start=max(0, n.start + d_tick), pitch=clamp_pitch(n.pitch + d_pitch))
                     for n in notes], "Duplicate notes")


def paste(doc: NoteDocument, clipboard: list[Note], at_tick: int) -> list[int]:
    """Paste notes (kept relative to each other) so that the earliest starts at `at_tick`."""
    if not clipboard:
        return []
    first = min(n.start for n in clipboard)
    return add(doc, [replace(n, start=n.start - first + at_tick) for n in clipboard], "Paste")


def quantize(doc: NoteDocument, ids, grid: int) -> None:
    new = {}
    for i in ids:
        n = doc.note(i)
        s = snap_tick(doc, n.start, grid)
        if s != n.start:
            new[i] = replace(n, start=s)
    if new:
        doc.undo_stack.push(ChangeNotes(doc, new, "Quantize"))

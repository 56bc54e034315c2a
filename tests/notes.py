"""Comparing notes in tests: everything a note is but the track it sits in."""
from __future__ import annotations

from core.score import Note


def note_key(n: Note) -> tuple:
    """Sortable, and equal for the same note in any track."""
    return (n.start, n.duration, n.pitch, n.velocity, n.program, n.drum)

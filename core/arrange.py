"""Where notes go in time: snapping to a grid counted from the bar line, the bar line a continuation
starts on, and how a continuation is placed into a piece (inserted, or replacing what was there).

Headless rules the piano roll, the generation controller and the CLI share; the GUI only shows them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Hashable, Iterable, Mapping

from core.score import Note, Score, TempoChange, TimeSignature

INSERT = "insert"    # the notes from the continuation's start on move later by its length
REPLACE = "replace"  # the notes that start inside the continuation's bars are dropped
PLACEMENTS = (INSERT, REPLACE)


# --- bars and the grid ----------------------------------------------------------------------------
def bar_start_at(meta: Score, tick: float) -> int:
    """Start of the bar that holds `tick` (a meter change starts a new bar, as Score.bar_starts does)."""
    tick = max(0, int(tick // 1))
    ts = meta.time_signature_at(tick)
    return ts.tick + ((tick - ts.tick) // ts.bar_ticks) * ts.bar_ticks


def bar_line_at_or_after(meta: Score, tick: float) -> int:
    """The first bar line at or after `tick`: where a continuation (whole bars) can begin."""
    start = bar_start_at(meta, tick)
    if start >= tick:
        return start
    following = start + meta.time_signature_at(start).bar_ticks
    changes = [ts.tick for ts in meta.time_signatures if start < ts.tick < following]
    return min(changes, default=following)


def snap_tick(meta: Score, tick: float, grid: int, mode: str = "round") -> int:
    """`tick` on a grid of `grid` ticks counted from its bar line (so meter changes stay aligned);
    mode "round" takes the nearest line, "floor" the one at or before. grid <= 0: no snap."""
    tick = max(0.0, float(tick))
    if grid <= 0:
        return int(round(tick))
    bar = bar_start_at(meta, tick)
    steps = (tick - bar) / grid
    steps = int(steps // 1) if mode == "floor" else int(round(steps))
    return bar + steps * grid


# --- where a continuation begins ------------------------------------------------------------------
def continuation_request(notes: Iterable[Note], at_tick: float) -> int:
    """The tick to continue from when the user asks at `at_tick` (the playhead).

    The music before `at_tick` is the prompt, and the continuation follows its last note: from the end
    of the last note that starts before `at_tick`, or `at_tick` itself when that note still sounds there.
    With no note before `at_tick` (the playhead at the start of a piece), the continuation follows the
    whole piece; in an empty piece it starts at `at_tick`."""
    at = max(0, int(round(at_tick)))
    notes = list(notes)
    before = [n for n in notes if n.start < at]
    if before:
        return min(at, max(n.end for n in before))
    if notes:
        return max(n.end for n in notes)
    return at


def continuation_bars(meta: Score, request: int, bars: int) -> tuple[int, int]:
    """The bars [start, end) a continuation of `bars` bars asked for at `request` fills: it opens on the
    bar line at or after the request and counts bars of the meter in force there (as core.generate)."""
    start = bar_line_at_or_after(meta, request)
    return start, start + bars * meta.time_signature_at(start).bar_ticks


# --- placing a continuation -----------------------------------------------------------------------
@dataclass
class Placement:
    """What accepting a continuation over [start, end) does to the piece's notes and tempo/meter map."""
    removed: list = field(default_factory=list)          # keys of notes it replaces
    moved: dict = field(default_factory=dict)            # key -> the note moved later, to make room
    tempos: list[TempoChange] = field(default_factory=list)
    time_signatures: list[TimeSignature] = field(default_factory=list)
    meta_changed: bool = False


def place_continuation(notes: Mapping[Hashable, Note], meta: Score, start: int, end: int,
                       mode: str) -> Placement:
    """Plan the placement of a continuation that fills the bars [start, end).

    INSERT: every note that starts at or after `start` moves later by end - start, and so do the tempo and
    meter changes from `start` on (the inserted bars keep the tempo and meter the continuation was written
    in). REPLACE: the notes that start in [start, end) go; nothing moves. A note that starts before
    `start` belongs to the prompt and stays as it is in both modes."""
    if mode not in PLACEMENTS:
        raise ValueError(f"unknown placement {mode!r}; one of {', '.join(PLACEMENTS)}")
    length = max(0, end - start)
    plan = Placement(tempos=list(meta.tempos), time_signatures=list(meta.time_signatures))
    if mode == REPLACE:
        plan.removed = [k for k, n in notes.items() if start <= n.start < end]
        return plan
    if length == 0:
        return plan
    plan.moved = {k: replace(n, start=n.start + length) for k, n in notes.items() if n.start >= start}
    shifted = Score([], [replace(t, tick=t.tick + length) if t.tick >= start else t for t in meta.tempos],
                    [replace(t, tick=t.tick + length) if t.tick >= start else t for t in meta.time_signatures])
    plan.meta_changed = (shifted.tempos, shifted.time_signatures) != (meta.tempos, meta.time_signatures)
    plan.tempos, plan.time_signatures = shifted.tempos, shifted.time_signatures
    return plan


def placed_score(piece: Score, continuation: Iterable[Note], start: int, end: int, mode: str) -> Score:
    """The piece as it will be once the continuation over [start, end) is accepted with `mode`."""
    notes = dict(enumerate(piece.notes))
    plan = place_continuation(notes, piece, start, end, mode)
    removed = set(plan.removed)
    kept = [replace(plan.moved.get(k, n)) for k, n in notes.items() if k not in removed]
    return Score(kept + [replace(n) for n in continuation], plan.tempos, plan.time_signatures)

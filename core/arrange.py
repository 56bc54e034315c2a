"""Where notes go in time: snapping to a grid counted from the bar line, the bar line a continuation
starts on, and how a continuation is placed into a piece (inserted, or replacing what was there).

Headless rules the piano roll, the generation controller and the CLI share; the GUI only shows them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Hashable, Iterable, Iterator, Mapping

from core import voices
from core.score import (PEDAL_CONTROLLER, TICKS_PER_BEAT, TRACK_NAME, Event, Note, Score, TempoChange, TimeSignature,
                        Track)

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


@dataclass(frozen=True)
class Bar:
    """One bar of a piece: its zero-based index, the tick it starts on and the meter it is in."""
    index: int
    tick: int
    signature: TimeSignature

    @property
    def beat_ticks(self) -> int:
        """Ticks of one beat of the meter (the denominator's note value)."""
        return TICKS_PER_BEAT * 4 // self.signature.denominator


def bars_between(meta: Score, start: float, end: float) -> Iterator[Bar]:
    """The bars that overlap [start, end], following every meter change, without walking from tick 0
    (what a view draws). A meter change inside a bar cuts that bar short, as Score.bar_starts does."""
    sigs = meta.time_signatures
    index = 0
    for i, ts in enumerate(sigs):
        if ts.tick > end:
            return
        seg_end = sigs[i + 1].tick if i + 1 < len(sigs) else None
        bar_ticks = ts.bar_ticks
        seg_bars = None if seg_end is None else -(-(seg_end - ts.tick) // bar_ticks)
        if seg_end is None or seg_end > start:
            k = max(0, int((start - ts.tick) // bar_ticks))
            while seg_bars is None or k < seg_bars:
                tick = ts.tick + k * bar_ticks
                if tick > end:
                    return
                yield Bar(index + k, tick, ts)
                k += 1
        index += seg_bars or 0


# --- the playhead ----------------------------------------------------------------------------------
def snap_playhead(meta: Score, tick: float, bars_only: bool = False) -> int:
    """Where a click in the ruler puts the playhead: on the nearest beat (`bars_only`: the nearest bar line,
    for a view too narrow to show beats). So the readout's bar.beat is exactly where it is, and a playhead
    on bar N's line continues from bar N."""
    start = bar_start_at(meta, tick)
    following = bar_line_at_or_after(meta, start + 1)
    if bars_only:
        return start if tick - start <= following - tick else following
    beat = TICKS_PER_BEAT * 4 // meta.time_signature_at(start).denominator
    return min(following, snap_tick(meta, tick, beat))


def position_text(meta: Score, tick: float) -> str:
    """The bar and beat at `tick`, one-based, as "33.1"; between beats the sixteenth too ("33.1.3"), so a
    position just after a bar line never reads as that bar line."""
    tick = max(0, int(tick))
    bar = next(iter(bars_between(meta, tick, tick)))
    beat, rest = divmod(tick - bar.tick, bar.beat_ticks)
    text = f"{bar.index + 1}.{beat + 1}"
    return f"{text}.{rest * 4 // bar.beat_ticks + 1}" if rest else text


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


# --- bar ranges: regenerating bars, adding a part -------------------------------------------------
def whole_bars(meta: Score, start: float, end: float) -> tuple[int, int]:
    """[start, end) widened to whole bars: from the bar line at or before `start` to the one at or after
    `end`; at least one bar."""
    first = bar_start_at(meta, start)
    return first, bar_line_at_or_after(meta, max(float(end), first + 1))


def bars_of_notes(meta: Score, notes: Iterable[Note]) -> tuple[int, int] | None:
    """The whole bars the notes start in (a note held over a bar line does not take the next bar);
    None without notes."""
    starts = [n.start for n in notes]
    if not starts:
        return None
    return whole_bars(meta, min(starts), max(starts) + 1)


def home_tracks(kept: Iterable[Note], replaced: Iterable[Note], new: Iterable[Note], start: int,
                end: int | None = None) -> list[Note]:
    """Copies of the `new` notes, each naming the track whose part it continues: core.voices reads the
    `kept` notes of each track (Note.track) around the bars [start, end) they fill (before them only for a
    continuation, `end` None), so the melody stays the melody and the bass the bass where tracks share an
    instrument; notes of one pitch in a track never overlap. A note whose instrument no kept track plays
    there goes to the track that held most of the `replaced` notes of its instrument (ties: the first), else
    it names none (Score.add_notes: a track of its instrument)."""
    kept, replaced, new = list(kept), list(replaced), list(new)
    size = 1 + max((n.track for n in kept + replaced if n.track is not None), default=-1)
    tracks: list[list[Note]] = [[] for _ in range(size)]
    for n in kept:
        if n.track is not None and n.track >= 0:
            tracks[n.track].append(n)
    counts: dict[tuple[int, bool], dict[int, int]] = {}
    for n in replaced:
        if n.track is not None:
            by_track = counts.setdefault(n.instrument, {})
            by_track[n.track] = by_track.get(n.track, 0) + 1
    out = voices.placed(tracks, new, start, end)
    for n in out:
        by_track = counts.get(n.instrument)
        if n.track is None and by_track:
            n.track = max(by_track, key=lambda t: (by_track[t], -t))
    return out


# --- placing a continuation -----------------------------------------------------------------------
@dataclass
class Placement:
    """What accepting a continuation over [start, end) does to the piece's notes and tempo/meter map."""
    removed: list = field(default_factory=list)          # keys of notes it replaces
    moved: dict = field(default_factory=dict)            # key -> the note moved later, to make room
    tempos: list[TempoChange] = field(default_factory=list)
    time_signatures: list[TimeSignature] = field(default_factory=list)
    meta_changed: bool = False
    events_shift: tuple[int, int] | None = None  # (from tick, by ticks): the tracks' other events move too


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
    if plan.moved:  # controllers, pedal, text... stay with the notes they belong to
        plan.events_shift = (start, length)
    shifted = Score([], [replace(t, tick=t.tick + length) if t.tick >= start else t for t in meta.tempos],
                    [replace(t, tick=t.tick + length) if t.tick >= start else t for t in meta.time_signatures])
    plan.meta_changed = (shifted.tempos, shifted.time_signatures) != (meta.tempos, meta.time_signatures)
    plan.tempos, plan.time_signatures = shifted.tempos, shifted.time_signatures
    return plan


def placed_score(piece: Score, continuation: Iterable[Note], start: int, end: int, mode: str) -> Score:
    """The piece as it will be once the continuation over [start, end) is accepted with `mode`."""
    notes = dict(enumerate(piece.document_notes()))  # each keeps its track; the continuation's go to the
    plan = place_continuation(notes, piece, start, end, mode)  # tracks whose parts they continue (home_tracks)
    removed = set(plan.removed)
    kept = [replace(plan.moved.get(k, n)) for k, n in notes.items() if k not in removed]
    tracks = piece.skeleton() if plan.events_shift is None else shifted_tracks(piece.skeleton(), *plan.events_shift)
    new = home_tracks([n for n in kept if n.start < start], (), continuation, start)
    return Score(kept + new, plan.tempos, plan.time_signatures,
                 tracks=tracks)


def shifted_tracks(tracks: Iterable[Track], from_tick: int, by: int) -> list[Track]:
    """Copies of the tracks (without notes) whose events at or after `from_tick`, and their ends, are `by`
    ticks later (a track's name stays at its start). A sustain pedal held across `from_tick` is lifted
    there and pressed again `by` ticks later, so that the bars put in between are not held by it."""
    out = []
    for t in tracks:
        moved = t.copy(notes=False)
        stay = [e for e in t.events if e.tick < from_tick or e.meta_type == TRACK_NAME]
        pedal: dict[int, Event] = {}  # channel -> its last pedal event before from_tick in this track
        for e in stay:
            if e.is_controller(PEDAL_CONTROLLER) and len(e.data) > 2:
                pedal[e.channel] = e
        held = [e for e in pedal.values() if e.data[2] >= 64]
        moved.events = stay + [Event(from_tick, e.data[:2] + b"\x00") for e in held] + [
            Event(from_tick + by, e.data) for e in held] + [
            replace(e, tick=e.tick + by) for e in t.events if e.tick >= from_tick and e.meta_type != TRACK_NAME]
        moved.events.sort(key=lambda e: e.tick)  # stable: a pedal pressed again comes before what moved there
        if moved.end and moved.end >= from_tick:
            moved.end += by
        out.append(moved)
    return out

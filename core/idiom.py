"""How each instrument is played: the register a new part is written in and how many notes it starts at
once. Torch-free; applied only when sampling (grammars made with `playable=True`), never when reading a
user's file, which may hold anything.

- a new part (Add part) follows its instrument's idiom: a bass line one note at a time in the bass register,
  winds, brass, solo strings' lines and voices monophonic (a solo string may double-stop), drums a few kit
  sounds at once, guitars and keyboards chords within their span;
- a continuation or regenerated bars follow the piece: each instrument starts at most as many notes at
  once as it does in the bars around them (`chord_caps`), so the texture stays the prompt's, and onsets
  keep to the places within the beat that the piece's own onsets take (`onset_grid`): a piece in straight
  16ths gets no stray 32nds or triplets, a swung or shifted one keeps its offsets.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from .score import TICKS_PER_BEAT, Note
from .tokenizer.vocabulary import GRID, STEP_TICKS


@dataclass(frozen=True)
class Idiom:
    low: int  # lowest MIDI pitch of the part's register
    high: int  # highest
    chord: int  # most notes it starts at one onset
    monophonic: bool = False  # one note sounds at a time: a note ends where the next begins


# Per General MIDI family of 8 programs (piano, chromatic percussion, organ, guitar, bass, strings, ensemble,
# brass, reed, pipe, synth lead, synth pad, synth fx, ethnic, percussive, sound effects).
_FAMILY = (
    Idiom(21, 108, 10),  # piano: two hands
    Idiom(48, 96, 4),  # mallets: four at most
    Idiom(24, 96, 10),  # organ
    Idiom(40, 84, 6),  # guitar: six strings
    Idiom(28, 55, 1, True),  # bass: E1 to G3, one note at a time
    Idiom(36, 96, 2, True),  # solo strings: a double stop at most
    Idiom(36, 84, 6),  # ensembles, choirs: chords
    Idiom(40, 82, 1, True),  # brass
    Idiom(36, 88, 1, True),  # reeds
    Idiom(55, 98, 1, True),  # pipes
    Idiom(36, 96, 1, True),  # synth leads
    Idiom(36, 96, 6),  # synth pads
    Idiom(36, 96, 4),  # synth effects
    Idiom(40, 88, 4),  # ethnic
    Idiom(36, 84, 2),  # percussive
    Idiom(36, 84, 2),  # sound effects
)
_PROGRAM = {
    32: Idiom(28, 55, 1, True), 43: Idiom(28, 55, 1, True),  # acoustic bass, contrabass
    42: Idiom(36, 69, 2, True),  # cello
    45: Idiom(36, 96, 2),  # pizzicato strings
    46: Idiom(24, 103, 6),  # harp
    47: Idiom(36, 57, 1, True),  # timpani
    48: Idiom(28, 96, 6), 49: Idiom(28, 96, 6), 50: Idiom(28, 96, 6), 51: Idiom(28, 96, 6),  # string ensembles
    52: Idiom(40, 81, 4), 53: Idiom(40, 81, 4), 54: Idiom(40, 81, 4),  # choir, voice: a choir's four parts
    55: Idiom(36, 84, 4),  # orchestra hit
    58: Idiom(28, 58, 1, True),  # tuba
    57: Idiom(34, 72, 1, True),  # trombone
    61: Idiom(34, 84, 4), 62: Idiom(34, 84, 4), 63: Idiom(34, 84, 4),  # brass section, synth brass
    70: Idiom(34, 75, 1, True),  # bassoon
    104: Idiom(48, 84, 4), 105: Idiom(48, 84, 4), 106: Idiom(48, 84, 3), 107: Idiom(48, 84, 4),
    108: Idiom(60, 84, 2), 109: Idiom(55, 77, 1, True), 110: Idiom(55, 96, 2, True), 111: Idiom(55, 88, 1, True),
}
# the General MIDI kit's sounds (acoustic bass drum .. open triangle): kick, snare, hats and a cymbal at once
DRUMS = Idiom(35, 81, 4)


def idiom(program: int, drum: bool = False) -> Idiom:
    """How an instrument is played (General MIDI program 0..127, or the drum kit)."""
    if drum:
        return DRUMS
    program = min(max(int(program), 0), 127)
    return _PROGRAM.get(program, _FAMILY[program // 8])


def part_limits(instrument: tuple[int, bool]) -> tuple[dict, dict]:
    """(chord caps, pitch ranges) of a new part on `instrument`, for GrammarState.limit_onsets."""
    i = idiom(*instrument)
    key = (0, True) if instrument[1] else (int(instrument[0]), False)
    return {key: i.chord}, {key: (i.low, i.high)}


CONTEXT_BEATS = 32  # the bars a continuation's texture is read from (8 bars of 4/4)


def chord_caps(notes: Iterable[Note], start: int, end: int | None = None,
               instruments: Iterable[tuple[int, bool]] = ()) -> dict[tuple[int, bool], int]:
    """Most notes each instrument starts at one onset in the CONTEXT_BEATS before `start` (and after
    `end`, when given): what sampled bars there may start at once. An instrument that is not played
    there (one of `instruments`, or none of its notes near) gets its idiom's chord."""
    lo = start - CONTEXT_BEATS * TICKS_PER_BEAT
    hi = (end if end is not None else start) + CONTEXT_BEATS * TICKS_PER_BEAT // 2
    onsets: dict[tuple, set] = {}
    for n in notes:
        if lo <= n.start < start or (end is not None and end <= n.start < hi):
            onsets.setdefault((n.instrument, n.start), set()).add(n.pitch)
    caps: dict[tuple[int, bool], int] = {}
    for (inst, _), pitches in onsets.items():
        caps[inst] = max(caps.get(inst, 1), len(pitches))
    for inst in instruments:
        inst = (0, True) if inst[1] else (int(inst[0]), False)
        caps.setdefault(inst, idiom(*inst).chord)
    return caps


# A grid is read from at least this many onsets; a place within the beat is on it when it holds at least
# GRID_SHARE of them (and 2): a performance's stray places stay off, a figure the piece uses twice stays on.
# A piece keeps to no grid (a free performance) unless the places on it hold GRID_COVER of the onsets and
# are at most half the places (32nds and 16th triplets together take 12 of the 24).
GRID_MIN_ONSETS, GRID_SHARE, GRID_COVER = 16, 0.02, 0.9


def onset_grid(notes: Iterable[Note], bar_starts: Sequence[int], start: int,
               end: int | None = None) -> frozenset[int] | None:
    """The places within the beat (tokenizer steps after the last quarter note of the onset's bar, 0..GRID-1)
    that the onsets in the CONTEXT_BEATS before `start` (and after `end`, when given) take, for
    GrammarState.limit_grid. None (no limit) with too few onsets there, or too few on recurring places."""
    lo = start - CONTEXT_BEATS * TICKS_PER_BEAT
    hi = (end if end is not None else start) + CONTEXT_BEATS * TICKS_PER_BEAT // 2
    ticks = {n.start for n in notes if lo <= n.start < start or (end is not None and end <= n.start < hi)}
    if len(ticks) < GRID_MIN_ONSETS:
        return None
    places: Counter = Counter()
    for t in ticks:
        bar = bar_starts[max(bisect.bisect_right(bar_starts, t) - 1, 0)]
        places[(t - bar) % TICKS_PER_BEAT // STEP_TICKS] += 1
    least = max(2, GRID_SHARE * len(ticks))
    grid = frozenset(p for p, c in places.items() if c >= least)
    kept = sum(places[p] for p in grid) >= GRID_COVER * len(ticks) and len(grid) <= GRID // 2
    return grid if kept else None


def shape_part(notes: list[Note], instrument: tuple[int, bool]) -> list[Note]:
    """A new part's notes as its instrument plays them: for a monophonic one, each note ends where the next
    starts (edited in place, returned)."""
    if instrument[1] or not idiom(*instrument).monophonic:
        return notes
    ordered = sorted(notes, key=lambda n: (n.start, -n.pitch))
    onsets = sorted({n.start for n in ordered})
    following = {a: b for a, b in zip(onsets, onsets[1:])}
    for n in ordered:
        nxt = following.get(n.start)
        if nxt is not None and n.start + n.duration > nxt:
            n.duration = nxt - n.start
    return notes


def most_at_once(notes: Iterable[Note]) -> int:
    """The most notes sounding together (a note ends before one that starts at its end)."""
    events = []
    for n in notes:
        events += [(n.start, 1), (n.start + max(n.duration, 1), -1)]
    now = top = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        now += d
        top = max(top, now)
    return top


__all__ = ["DRUMS", "Idiom", "chord_caps", "idiom", "most_at_once", "onset_grid", "part_limits", "shape_part"]

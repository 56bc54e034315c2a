"""Which track each generated note goes to, where several tracks share an instrument.

The model writes notes by instrument only: POP909's MELODY, BRIDGE and PIANO are all program 0, a chorale's
four voices one program. The placement is inferred after sampling, from the tracks around the new notes
(the prompt's last bars, and in a regenerated range the bars after it too):

- each track's register (mean and spread of its pitches) and polyphony (notes per onset): a track that
  plays one note at a time (a melody, a chorale voice, a bass line) is a *voice* and takes at most one
  note per onset; a track that plays chords takes any number;
- voice leading: a voice goes on from its last pitch (a small step costs little, a leap much), and voices
  keep their order (the highest voice takes the higher note: no crossing at one onset);
- a note that no voice takes goes to the chord track whose register fits it best (else the nearest voice).

`place_notes` is the one function: ContinuationStream.score, InfillStream.score, the app's Accept
(core.arrange) all call it. `untangle` then keeps a track's notes of one pitch from overlapping, so that a
saved file needs no extra tracks ("MELODY 2") to hold them. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .score import TICKS_PER_BEAT, Note

CONTEXT_BEATS = 32  # the bars read before the new notes (8 bars of 4/4)
MONO_SHARE = 0.2  # a track with chords at fewer than this share of its onsets is a voice
LEAP = 7.0  # semitones at which a voice's step costs as much as a register one spread off
CHORD_BIAS = 0.0  # extra cost of giving a note to a chord track (fitted on POP909 and Bach train pieces)
REST_BIAS = 0.0  # extra cost of a voice resting while a chord track takes the note (fitted likewise)


@dataclass
class _Track:
    index: int
    pitches: list[int]
    mean: float
    spread: float
    voice: bool  # one note at a time
    last: float | None = None  # the voice's last pitch (the top of the last chord for a chord track)
    counts: dict = field(default_factory=dict)  # drums: pitch -> notes


def _profile(index: int, notes: Sequence[Note]) -> _Track:
    pitches = [n.pitch for n in notes]
    mean = sum(pitches) / len(pitches)
    spread = max(3.0, (sum((p - mean) ** 2 for p in pitches) / len(pitches)) ** 0.5)
    onsets: dict[int, int] = {}
    for n in notes:
        onsets[n.start] = onsets.get(n.start, 0) + 1
    chords = sum(1 for c in onsets.values() if c > 1)
    voice = chords < MONO_SHARE * len(onsets)
    last_start = max(n.start for n in notes)
    last = [n.pitch for n in notes if n.start == last_start]
    counts: dict[int, int] = {}
    for p in pitches:
        counts[p] = counts.get(p, 0) + 1
    return _Track(index, pitches, mean, spread, voice, float(max(last)), counts)


def _voice_cost(t: _Track, pitch: int) -> float:
    register = ((pitch - t.mean) / t.spread) ** 2
    step = abs(pitch - t.last) / LEAP if t.last is not None else 0.0
    return 0.5 * register + step * step


def _chord_cost(t: _Track, pitch: int) -> float:
    return 0.5 * ((pitch - t.mean) / t.spread) ** 2 + CHORD_BIAS


def _assign_onset(pitches: list[int], voices: list[_Track], chords: list[_Track]) -> list[int]:
    """Track index for each pitch of one onset (pitches high to low; voices high to low by register)."""
    n, m = len(pitches), len(voices)

    def other(p: int) -> tuple[float, int]:  # a note no voice takes
        if chords:
            c = min(chords, key=lambda t: _chord_cost(t, p))
            return _chord_cost(c, p) + REST_BIAS, c.index
        v = min(voices, key=lambda t: _voice_cost(t, p))  # more notes than voices: the nearest doubles
        return _voice_cost(v, p) + 100.0, v.index

    others = [other(p) for p in pitches]
    inf = float("inf")
    # dp[i][j]: best cost of the first i voices and first j pitches (order kept, voices may rest)
    dp = [[inf] * (n + 1) for _ in range(m + 1)]
    back = [[None] * (n + 1) for _ in range(m + 1)]
    dp[0][0] = 0.0
    for i in range(m + 1):
        for j in range(n + 1):
            c = dp[i][j]
            if c == inf:
                continue
            if j < n and c + others[j][0] < dp[i][j + 1]:  # pitch j to a chord track
                dp[i][j + 1], back[i][j + 1] = c + others[j][0], (i, j, None)
            if i < m and c < dp[i + 1][j]:  # voice i rests
                dp[i + 1][j], back[i + 1][j] = c, (i, j, None)
            if i < m and j < n:  # voice i takes pitch j
                cost = c + _voice_cost(voices[i], pitches[j])
                if cost < dp[i + 1][j + 1]:
                    dp[i + 1][j + 1], back[i + 1][j + 1] = cost, (i, j, voices[i].index)
    out = [0] * n
    i, j = m, n
    while i or j:
        pi, pj, track = back[i][j]
        if pj < j:
            out[pj] = track if track is not None and pi < i else others[pj][1]
        i, j = pi, pj
    return out


def _context(tracks: Sequence[Sequence[Note]], start: int,
             end: int | None) -> dict[tuple[int, bool], list[tuple[int, list[Note], list[Note]]]]:
    """Per instrument, each track's (index, notes in the context before `start` and after `end`, those before)."""
    lo = start - CONTEXT_BEATS * TICKS_PER_BEAT
    hi = (end if end is not None else start) + CONTEXT_BEATS * TICKS_PER_BEAT // 2
    by_instrument: dict[tuple[int, bool], list[tuple[int, list[Note], list[Note]]]] = {}
    for i, notes in enumerate(tracks):
        for kind in dict.fromkeys(n.instrument for n in notes):
            before = [n for n in notes if n.instrument == kind and lo <= n.start < start]
            after = [n for n in notes if n.instrument == kind and end is not None and end <= n.start < hi]
            by_instrument.setdefault(kind, []).append((i, before + after, before))
    return by_instrument


def _profiles(playing: list[tuple[int, list[Note], list[Note]]], end: int | None) -> dict[int, _Track]:
    """The profile of each playing track, its `last` the pitch the new notes go on from."""
    profiles = {}
    for i, mine, before in playing:
        p = _profile(i, mine)
        if before:
            last_start = max(n.start for n in before)
            p.last = float(max(n.pitch for n in before if n.start == last_start))
        elif end is not None:  # only notes after the range: lead into its first
            first = min(n.start for n in mine)
            p.last = float(max(n.pitch for n in mine if n.start == first))
        else:
            p.last = None
        profiles[i] = p
    return profiles


def _place_pitched(new: Sequence[Note], members: list[int], profiles: dict[int, _Track],
                   out: list[int | None]) -> None:
    """Set out[k] for the `members` (new notes of one pitched instrument) onset by onset: voices take one note
    each with voice leading carried along, chord tracks the rest."""
    voices = sorted((t for t in profiles.values() if t.voice), key=lambda t: -t.mean)
    chords = [t for t in profiles.values() if not t.voice]
    onsets: dict[int, list[int]] = {}
    for k in members:
        onsets.setdefault(new[k].start, []).append(k)
    for tick in sorted(onsets):
        ks = sorted(onsets[tick], key=lambda k: -new[k].pitch)
        if not voices:
            chosen = [min(chords, key=lambda t: _chord_cost(t, new[k].pitch)).index for k in ks]
        else:
            chosen = _assign_onset([new[k].pitch for k in ks], voices, chords)
        for k, i in zip(ks, chosen):
            out[k] = i
        for i in set(chosen):  # voice leading goes on from what each track just played
            profiles[i].last = float(max(new[k].pitch for k, c in zip(ks, chosen) if c == i))


def place_notes(tracks: Sequence[Sequence[Note]], new: Sequence[Note], start: int,
                end: int | None = None) -> list[int | None]:
    """The track index for each of the `new` notes (None: no track of its instrument; the caller's default
    applies). `tracks[i]` are the notes track i holds; `start`..`end` the ticks the new notes fill: what the
    tracks play in the CONTEXT_BEATS before `start` (and after `end`, when given) decides."""
    by_instrument = _context(tracks, start, end)
    out: list[int | None] = [None] * len(new)
    groups: dict[tuple[int, bool], list[int]] = {}
    for k, n in enumerate(new):
        groups.setdefault(n.instrument, []).append(k)
    for kind, members in groups.items():
        candidates = by_instrument.get(kind, [])
        playing = [(i, mine, before) for i, mine, before in candidates if mine]
        if not playing:
            if candidates:
                for k in members:
                    out[k] = candidates[0][0]
            continue
        if len(playing) == 1:
            for k in members:
                out[k] = playing[0][0]
            continue
        profiles = _profiles(playing, end)
        if kind[1]:  # drums: the track that played the key most (else the busiest)
            for k in members:
                pitch = new[k].pitch
                out[k] = max(profiles.values(), key=lambda t: (t.counts.get(pitch, 0), len(t.pitches))).index
            continue
        _place_pitched(new, members, profiles, out)
    return out


def untangle(notes: list[Note], fixed: Iterable[Note] = ()) -> list[Note]:
    """The new `notes` of one track (edited in place and returned, a few dropped) so that no two of one pitch
    overlap, neither with each other nor with the track's `fixed` notes: a new note ends where the next of
    its key starts, a new note struck inside a fixed one of its key lasts until that one ends, and one
    struck at the tick a note of its key starts is dropped. A track then needs no extra layer in a file."""
    fixed_by_key: dict[int, list[Note]] = {}
    for n in fixed:
        fixed_by_key.setdefault(n.pitch, []).append(n)
    by_key: dict[int, list[Note]] = {}
    for n in notes:
        by_key.setdefault(n.pitch, []).append(n)
    dropped: set[int] = set()
    for pitch, same in by_key.items():
        same.sort(key=lambda n: n.start)
        starts = {f.start for f in fixed_by_key.get(pitch, ())}
        previous = None
        for n in same:
            if n.start in starts or (previous is not None and previous.start == n.start):
                dropped.add(id(n))
                continue
            for f in fixed_by_key.get(pitch, ()):
                if f.start < n.start < f.start + max(f.duration, 1):
                    n.duration = max(n.duration, f.start + max(f.duration, 1) - n.start)
                elif n.start < f.start < n.start + n.duration:
                    n.duration = f.start - n.start
            if previous is not None and previous.start + previous.duration > n.start:
                previous.duration = n.start - previous.start
            starts.add(n.start)
            previous = n
    return [n for n in notes if id(n) not in dropped]


def placed(tracks: Sequence[Sequence[Note]], new: Sequence[Note], start: int, end: int | None = None) -> list[Note]:
    """The `new` notes (copies, in their order), each naming its track (`Note.track`, see place_notes),
    untangled from the notes of that track and from each other (see untangle: a few may be dropped)."""
    where = place_notes(tracks, new, start, end)
    copies = [Note(n.start, n.duration, n.pitch, n.velocity, n.program, n.drum, i) for n, i in zip(new, where)]
    by_track: dict[int | None, list[Note]] = {}
    for n in copies:
        by_track.setdefault(n.track, []).append(n)
    kept: set[int] = set()
    for i, notes in by_track.items():
        fixed = [] if i is None else [n for n in tracks[i] if n.instrument in {m.instrument for m in notes}]
        kept.update(id(n) for n in untangle(notes, fixed))
    return [n for n in copies if id(n) in kept]


__all__ = ["place_notes", "placed", "untangle"]

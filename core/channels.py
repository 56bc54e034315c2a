"""Which MIDI channel each note sounds on, and when a channel needs a program change: one rule for the
files the app writes (core.midi) and for live output (core.live), so that a piece sounds the same played
as it does from its file.

The rule, per track of the piece: a track that has a channel keeps it; drums go on channel 10; any other
track takes the first pitched channel that no track and no event uses. Once the 15 pitched channels run
out, a track shares the one whose note starts collide least with its own (two programs cannot start notes
on one channel at the same tick), and a program change switches a channel wherever a note needs another
program than the one in force there.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .score import DRUM_CHANNEL, Note, Score, Track

PITCHED_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)


def pitched_channel(used: Mapping[int, set[int]], starts: set[int]) -> int:
    """The channel for a pitched part whose notes start at `starts`, given the note starts already on each
    used channel: the first free pitched channel, else the one where fewest starts collide (then the one
    with the fewest notes)."""
    free = [c for c in PITCHED_CHANNELS if c not in used]
    if free:
        return free[0]
    return min(PITCHED_CHANNELS, key=lambda c: (len(used[c] & starts), len(used[c])))


def track_channels(tracks: Sequence[Track]) -> tuple[list[int], dict[int, set[int]]]:
    """The channel of every track (see the module), and the note starts on each channel in use."""
    used: dict[int, set[int]] = {}
    for t in tracks:
        if t.channel is not None:
            used.setdefault(t.channel, set()).update(n.start for n in t.notes)
        for e in t.events:
            if e.channel is not None:
                used.setdefault(e.channel, set())
    channels: list[int] = []
    for t in tracks:
        if t.channel is not None:
            channels.append(t.channel)
        elif t.drum:
            channels.append(DRUM_CHANNEL)
        elif not t.notes:
            channels.append(0)  # nothing sounds on it
        else:
            starts = {n.start for n in t.notes}
            ch = pitched_channel(used, starts)
            used.setdefault(ch, set()).update(starts)
            channels.append(ch)
    return channels, used


class ChannelMap:
    """The rule above, note by note, for live output.

    Given the piece (`use`), a note of it sounds on its track's channel; a note is known by its start, pitch
    and instrument, so a copy with another length (cut at a loop's end, lengthened by the pedal) is the same
    note. A note the piece lacks (a continuation as it streams) goes where the piece's notes of its instrument
    are, as it will when it is saved, or else where a new track of its instrument would go.

    It also keeps the program each channel is set to, which outlives a piece on the same output:
    `channel(note)` says when the note needs a program change first.
    """

    def __init__(self, piece: Score | None = None):
        self._programs: dict[int, int] = {}  # channel -> the program it was last switched to
        self.use(piece)

    def use(self, piece: Score | None) -> "ChannelMap":
        """Route the notes of `piece` (None: no piece; every instrument as a new track)."""
        tracks = piece.tracks(include_empty=True) if piece is not None else []
        channels, self._used = track_channels(tracks)
        self._by_note: dict[tuple[int, int, tuple[int, bool]], list[int]] = {}
        self._by_instrument: dict[tuple[int, bool], int] = {}
        for t, ch in zip(tracks, channels):
            for n in t.notes:
                self._by_note.setdefault((n.start, n.pitch, n.instrument), []).append(ch)
            if t.notes:
                self._by_instrument.setdefault(t.instrument, ch)
        self._turn: dict[tuple[int, int, tuple[int, bool]], int] = {}
        return self

    def channel(self, note: Note) -> tuple[int, bool]:
        """(channel, program change needed): the change to note.program goes before the note."""
        ch = self._route(note)
        if note.drum:
            return ch, False
        needed = self._programs.get(ch) != note.program
        self._programs[ch] = note.program
        return ch, needed

    def _route(self, note: Note) -> int:
        key = (note.start, note.pitch, note.instrument)
        on = self._by_note.get(key)
        if on is not None:  # notes alike on several tracks (a doubling) take their channels in turn
            turn = self._turn.get(key, 0)
            self._turn[key] = turn + 1
            return on[turn % len(on)]
        ch = self._by_instrument.get(note.instrument)
        if ch is None:
            ch = DRUM_CHANNEL if note.drum else pitched_channel(self._used, {note.start})
            self._by_instrument[note.instrument] = ch
        if not note.drum:
            self._used.setdefault(ch, set()).add(note.start)
        return ch

"""MidiCapture: what a player plays on a MIDI input, with arrival times, turned into a Score."""
from __future__ import annotations

import io
import threading
import time
from dataclasses import replace

import mido

from ..midi import read_midi
from ..score import TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature


class MidiCapture:
    """Records incoming notes with arrival times (perf_counter taken in the callback: mido has none)."""

    def __init__(self):
        self.events: list[tuple[float, mido.Message]] = []
        self._held: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def __call__(self, msg: mido.Message, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        if msg.type not in ("note_on", "note_off", "program_change", "control_change"):
            return
        with self._lock:
            self.events.append((t, msg))
            if msg.type == "note_on" and msg.velocity > 0:
                self._held.add((msg.channel, msg.note))
            elif msg.type in ("note_on", "note_off"):
                self._held.discard((msg.channel, msg.note))

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self._held.clear()

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def first_note_time(self) -> float | None:
        with self._lock:
            return next((t for t, m in self.events if m.type == "note_on" and m.velocity > 0), None)

    def last_event_time(self) -> float | None:
        with self._lock:
            return next((t for t, m in reversed(self.events) if m.type in ("note_on", "note_off")), None)

    def to_score(self, bpm: float, origin_time: float | None = None, *, until: float | None = None,
                 numerator: int = 4, denominator: int = 4) -> Score:
        """The captured notes in ticks at `bpm` from `origin_time` (default: the first note).

        What was played is read exactly as core.midi reads a file of it (one rule for pairing note-ons with
        note-offs, the sustain pedal, program changes and channel 10 as drums); notes still held end at
        `until` (default: now), notes begun before the origin are left out.
        """
        with self._lock:
            events = list(self.events)
        if origin_time is None:
            origin_time = next((t for t, m in events if m.type == "note_on" and m.velocity > 0), 0.0)
        until = time.perf_counter() if until is None else until
        ticks_per_second = bpm / 60.0 * TICKS_PER_BEAT
        track = mido.MidiTrack()
        now = 0
        for t, m in sorted(events, key=lambda e: e[0]):  # by arrival time (stable: one instant keeps its order)
            at = round((t - origin_time) * ticks_per_second)
            if at < 0 and m.type in ("note_on", "note_off"):
                continue  # its note-off, if it comes later, finds nothing sounding and is ignored
            at = max(at, 0)  # a program or controller set before the origin is in force from its start
            track.append(m.copy(time=at - now))
            now = at
        track.append(mido.MetaMessage("end_of_track", time=max(round((until - origin_time) * ticks_per_second), now)
                                      - now))  # where the notes still held end
        data = io.BytesIO()
        mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track]).save(file=data)
        played, _ = read_midi(data.getvalue())
        return Score(played.notes, [TempoChange(0, bpm)], [TimeSignature(0, numerator, denominator)])

    def notes_in(self, tempo_map: Score, start_tick: int, origin_time: float, *, until: float | None = None,
                 early_s: float = 0.0) -> list[Note]:
        """The captured notes placed in a piece (recording at the playhead): what was played s seconds after
        `origin_time` lands s seconds after `start_tick` in `tempo_map`, following its tempo changes. A note
        played up to `early_s` before the origin (a player slightly ahead of the downbeat) starts on it."""
        played = self.to_score(60.0, origin_time - early_s, until=until)  # at 60 BPM a beat's ticks are a second
        t0 = tempo_map.seconds_at(start_tick) - early_s
        notes = []
        for n in played.notes:
            on = max(start_tick, round(tempo_map.tick_at(t0 + n.start / TICKS_PER_BEAT)))
            off = round(tempo_map.tick_at(t0 + n.end / TICKS_PER_BEAT))
            notes.append(replace(n, start=on, duration=max(1, off - on)))
        return notes

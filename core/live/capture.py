"""MidiCapture: what a player plays on a MIDI input, with arrival times, turned into a Score."""
from __future__ import annotations

import threading
import time

import mido

from ..score import DRUM_CHANNEL, TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature


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

        Note-ons pair with the next note-off (or velocity-0 note-on) on the same channel and key;
        notes still held end at `until` (default: now). Channel 10 is drums.
        """
        with self._lock:
            events = list(self.events)
        if origin_time is None:
            origin_time = next((t for t, m in events if m.type == "note_on" and m.velocity > 0), 0.0)
        until = time.perf_counter() if until is None else until
        ticks_per_second = bpm / 60.0 * TICKS_PER_BEAT

        def tick(t: float) -> int:
            return round((t - origin_time) * ticks_per_second)

        programs = [0] * 16
        open_notes: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # key -> [(start, velocity, program)]
        notes: list[Note] = []

        def close(key, end_tick):
            start, velocity, program = open_notes[key].pop(0)
            if not open_notes[key]:
                del open_notes[key]
            if start >= 0:  # notes begun before the origin are dropped
                notes.append(Note(start, max(1, end_tick - start), key[1], velocity, program,
                                  drum=key[0] == DRUM_CHANNEL))

        for t, m in events:
            if m.type == "program_change":
                programs[m.channel] = m.program
            elif m.type == "note_on" and m.velocity > 0:
                open_notes.setdefault((m.channel, m.note), []).append((tick(t), m.velocity, programs[m.channel]))
            elif m.type in ("note_on", "note_off") and (m.channel, m.note) in open_notes:
                close((m.channel, m.note), tick(t))
        for key in list(open_notes):
            while key in open_notes:
                close(key, tick(until))
        return Score(notes, [TempoChange(0, bpm)], [TimeSignature(0, numerator, denominator)])

"""A take recorded at the playhead lands where it was played, in the piece's tempo map (tempo changes
followed), and a note a little ahead of the downbeat starts on it."""
from __future__ import annotations

import mido

from core.live import MidiCapture
from core.score import Score, TempoChange, TimeSignature


def test_a_take_follows_the_tempo_changes_of_the_piece():
    # 120 BPM for bar 1, then 60 BPM: a beat is 0.5 s, then 1 s
    meta = Score([], [TempoChange(0, 120), TempoChange(1920, 60)], [TimeSignature(0, 4, 4)])
    capture = MidiCapture()
    origin = 100.0  # the playhead (bar 1, beat 3) sounds at this perf_counter time
    start = 960
    capture(mido.Message("note_on", note=50, velocity=80), origin - 0.05)   # just ahead of the downbeat
    capture(mido.Message("note_on", note=60, velocity=80), origin + 1.0)    # 2 beats at 120: bar 2's line
    capture(mido.Message("note_off", note=60), origin + 2.0)                # 1 beat at 60
    capture(mido.Message("note_off", note=50), origin + 0.5)
    notes = sorted(capture.notes_in(meta, start, origin, until=origin + 3, early_s=0.125), key=lambda n: n.pitch)
    assert [(n.pitch, n.start) for n in notes] == [(50, 960), (60, 1920)]
    assert notes[1].duration == 480 and abs(notes[0].duration - 480) <= 1

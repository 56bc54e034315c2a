"""The metronome's clicks and count-in follow the piece's meter and tempo (core.live.metronome)."""
from __future__ import annotations

import pytest

from core.live.metronome import ACCENT, BEAT, clicks, count_in
from core.score import Score, TempoChange, TimeSignature


def test_a_click_per_beat_accented_on_each_bar_through_a_meter_change():
    meta = Score([], [TempoChange(0, 120)], [TimeSignature(0, 4, 4), TimeSignature(3840, 3, 4)])
    notes = clicks(meta, 0, 3840 + 2 * 1440)
    assert [n.start for n in notes] == list(range(0, 3840 + 2 * 1440, 480))
    assert [n.pitch for n in notes] == ([ACCENT, BEAT, BEAT, BEAT] * 2 + [ACCENT, BEAT, BEAT] * 2)
    assert all(n.drum for n in notes)
    assert [n.start for n in clicks(meta, 500, 1500)] == [960, 1440]  # only those inside the range


def test_count_in_is_one_bar_at_the_tempo_and_meter_in_force():
    meta = Score([], [TempoChange(0, 120), TempoChange(1920, 60)], [TimeSignature(0, 4, 4), TimeSignature(1920, 6, 8)])
    beats, length = count_in(meta, 0)
    assert length == pytest.approx(2.0) and [round(b, 6) for b, _ in beats] == [2.0, 1.5, 1.0, 0.5]
    assert [n.pitch for _, n in beats] == [ACCENT, BEAT, BEAT, BEAT]
    beats, length = count_in(meta, 1920)  # 6/8 at 60 quarter notes a minute: a bar is 3 s, six eighths
    assert length == pytest.approx(3.0) and len(beats) == 6 and beats[1][0] == pytest.approx(2.5)

"""Where a jam's answer appears in the roll: from the bar line of the bar the playhead is in, whatever the
meter (core.arrange's bars, not a 4/4 bar of 1920 ticks)."""
from __future__ import annotations

import pytest

from core.score import Note, Score, TempoChange, TimeSignature


@pytest.mark.parametrize("meter, playhead, bar_line", [
    ((3, 4), 2 * 1440 + 1000, 2 * 1440),
    ((5, 4), 2400 + 2000, 2400),        # a bar longer than 4/4: 1920-tick steps stopped inside it
    ((12, 8), 2880 + 2500, 2880),
])
def test_a_jam_answer_starts_on_the_bar_line_of_the_playheads_bar(make_window, meter, playhead, bar_line):
    w = make_window()
    w.doc.load_score(Score([Note(0, 480, 60)], [TempoChange(0, 120)], [TimeSignature(0, *meter)]))
    w.roll.set_playhead(playhead)
    w.jam.stateChanged.emit("answering")  # as the jam session says when it starts an answer
    assert w.jam._anchor == bar_line

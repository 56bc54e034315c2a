"""Loop playback's timing, without a MIDI system: the transport plays into a recording port object."""
from __future__ import annotations

import time

from core import live
from musicapp.transport import Transport
from tests.gui.helpers import RecordingPort, demo_score, onsets, onsets_heard


def test_a_late_loop_pass_does_not_play_over_the_next(qtbot, monkeypatch):
    """The GUI thread held up past a wrap (an event loop busy elsewhere) schedules the next pass late, and on
    a loaded machine that pass's player thread runs after the GUI has read where the pass ends: the player
    then moves its timeline on. The pass after it must start where it really ends: before, it started at
    the old end, over the late pass's last notes (the bar's first notes before its last ones)."""
    feed = live.Player._feed

    def feed_late(self, *args):  # the player's thread gets the CPU only after the GUI thread has gone on
        time.sleep(0.03)
        feed(self, *args)

    monkeypatch.setattr(live.Player, "_feed", feed_late)
    port = RecordingPort()
    t = Transport()
    t.port, t.scheduler = port, live.Scheduler(port).start()
    try:
        score = demo_score(bars=2, bpm=300)
        t.loop = (0, 1920)  # one bar of 4/4 at 300 BPM: 0.8 s
        t.play(score, 0)
        time.sleep(1.1)  # the event loop stalls past the first wrap (at 0.88 s)
        qtbot.wait(2000)
        t.stop()
    finally:
        t.shutdown()
    heard = [m.note for _, m in port.messages if m.type == "note_on" and m.velocity > 0]
    first_bar = onsets([n for n in score.notes if n.start < 1920])
    assert onsets_heard(heard, first_bar * 10) >= 3 * len(first_bar)

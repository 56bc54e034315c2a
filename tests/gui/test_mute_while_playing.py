"""Mute while the piece plays, without a MIDI system: the window plays into a recording port object. The new
mix goes on from where it is: no note due meanwhile is lost or doubled, the muted track falls silent at once
and hangs no note, and a note still sounding on another track is not cut."""
from __future__ import annotations

import time

from core import live
from core.score import Note, Score, TempoChange, TimeSignature
from musicapp.transport import LOOKAHEAD_S
from tests.gui.helpers import RecordingPort
from tests.midi_checks import sounding

BASS = 32  # program


def two_tracks() -> Score:
    """Two bars at 240 BPM (a bar a second): a melody in eighths over a bass in whole notes."""
    melody = [Note(k * 240, 220, 60 + k % 8, 90) for k in range(16)]
    bass = [Note(bar * 1920, 1800, 36 + bar, 80, program=BASS) for bar in range(2)]
    return Score(melody + bass, [TempoChange(0, 240)], [TimeSignature(0, 4, 4)])


def window_playing_into(make_window, qtbot, scheduler_started: bool, loop: tuple[int, int] | None = None):
    w = make_window()
    w.transport._close_port()
    port = RecordingPort()
    w.transport.port, w.transport.scheduler = port, live.Scheduler(port)
    if scheduler_started:
        w.transport.scheduler.start()
    score = two_tracks()
    w.doc.load_score(score)
    w.tracks_panel.refresh()
    rows = {r.track.program: k for k, r in enumerate(w.tracks_panel.rows)}
    if loop is not None:
        w._set_loop(*loop, True)
    w.toggle_play()
    return w, port, score, rows, w.transport._current.player.timeline


def wait_until(t: float) -> None:
    time.sleep(max(0.0, t - time.perf_counter()))


def test_a_note_due_as_a_track_is_muted_is_not_lost(make_window, qtbot):
    """The scheduler's thread has not sent the melody's notes due by now (held up, as a loaded machine can):
    muting the bass then must not drop them. Before, the restart dropped every note before the position."""
    w, port, score, rows, timeline = window_playing_into(make_window, qtbot, scheduler_started=False)
    try:
        wait_until(timeline.time_at(720) + 0.005)  # just after the fourth eighth was due
        w.tracks_panel.set_muted(rows[BASS], True)
        assert w.transport.playing
        w.transport.scheduler.start()  # the scheduler's thread runs again
        qtbot.waitUntil(lambda: not w.transport.playing, timeout=5000)  # to the piece's end
    finally:
        w.transport.shutdown()
    ons = [m for _, m in port.messages if m.type == "note_on" and m.velocity]
    assert [m.note for m in ons] == [n.pitch for n in score.notes if n.program != BASS]  # each once, in order
    assert sounding(port.messages) == {}


def test_muting_goes_on_in_time_and_leaves_the_other_tracks_notes_sounding(make_window, qtbot):
    w, port, score, rows, timeline = window_playing_into(make_window, qtbot, scheduler_started=True)
    try:
        wait_until(timeline.time_at(600))  # the third eighth and the first bass note sound
        clicked = time.perf_counter()
        w.tracks_panel.set_muted(rows[0], True)  # the melody
        done = time.perf_counter()
        assert w.transport.playing
        qtbot.waitUntil(lambda: not w.transport.playing, timeout=5000)
    finally:
        w.transport.shutdown()
    messages = port.messages
    assert sounding(messages) == {}
    melody = {n.pitch for n in score.notes if n.program != BASS}
    # the melody: nothing starts after the click, and its sounding note ends at once
    assert not [m for t, m in messages if t > done and m.type == "note_on" and m.velocity and m.note in melody]
    offs = [t for t, m in messages if m.type in ("note_off", "note_on") and m.note == 62 and not m.velocity]
    assert len(offs) == 1 and clicked <= offs[0] <= done
    # the bass: its first note sounds on to its end, not cut nor struck again; the second comes in time
    bass = [(t, m) for t, m in messages if m.type in ("note_on", "note_off") and m.note in (36, 37)]
    assert [(m.note, m.type, bool(m.velocity)) for _, m in bass] == [
        (36, "note_on", True), (36, "note_off", False), (37, "note_on", True), (37, "note_off", False)]
    assert abs(bass[1][0] - timeline.time_at(1800)) < 0.05
    assert abs(bass[2][0] - timeline.time_at(1920)) < 0.05  # a restart put it LOOKAHEAD_S (80 ms) late


def test_muting_while_the_next_loop_pass_is_queued_keeps_the_loop(make_window, qtbot):
    """The loop's next pass is scheduled 0.4 s before the wrap: a mute then must reach it too (no bass after
    the click, in this pass or the next) and the melody must go round the wrap each note once, in order."""
    w, port, score, rows, timeline = window_playing_into(make_window, qtbot, scheduler_started=True,
                                                         loop=(0, 1920))
    try:
        qtbot.waitUntil(lambda: w.transport._next is not None, timeout=3000)
        clicked = time.perf_counter()
        w.tracks_panel.set_muted(rows[BASS], True)
        assert w.transport.playing and w.transport._next is not None
        qtbot.waitUntil(lambda: time.perf_counter() > timeline.time_at(1920) + 1.3, timeout=5000)  # round again
        w.toggle_play()
    finally:
        w.transport.shutdown()
    messages = port.messages
    assert sounding(messages) == {}
    assert not [m for t, m in messages if t > clicked + LOOKAHEAD_S and m.type == "note_on" and m.velocity
                and m.note == 36]
    bar = [n.pitch for n in score.notes if n.program != BASS and n.start < 1920]
    heard = [m.note for _, m in messages if m.type == "note_on" and m.velocity and m.note != 36]
    assert len(heard) >= len(bar) + 8 and heard == (bar * 4)[:len(heard)]  # past the wrap, none lost or doubled

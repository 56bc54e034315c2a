"""Recording from a MIDI keyboard into the roll at the playhead, through REAL ports (a private JACK server):
a bar of count-in clicks on the output, the take placed where it was played in the piece's tempo, one
undoable step."""
from __future__ import annotations

import time
import uuid

import mido
import pytest

from core.live import JACK_BACKEND
from tests.gui.helpers import demo_score
from tools.jack import MidiRecorder

BAR = 1920


@pytest.fixture
def keyboard_window(jack_server, monkeypatch, make_window, prefs):
    from core.live import midi_backend
    monkeypatch.setenv("MIDO_BACKEND", JACK_BACKEND)
    client = f"kbd{uuid.uuid4().hex[:6]}"
    keyboard = midi_backend("jack").open_output("out", client_name=client)
    with MidiRecorder() as daw:
        prefs.set("midi/output", daw.port_name)
        prefs.set("midi/input", f"{client}:out")
        w = make_window(start=True)
        time.sleep(0.1)  # JACK makes the connection in its next process cycle
        yield w, keyboard, daw
    keyboard.close()


def sleep_until(t: float) -> None:
    while time.perf_counter() < t:
        time.sleep(0.001)


@pytest.mark.jack
def test_record_at_the_playhead_with_count_in_and_undo(keyboard_window, qtbot):
    w, keyboard, daw = keyboard_window
    piece = demo_score(bars=4, bpm=240)  # a beat is 0.25 s: the count-in bar takes 1 s
    w.doc.load_score(piece)
    w.seek(2 * BAR)  # bar 3
    w.act_record.trigger()
    assert w.recorder.recording and w.act_record.isChecked(), w.messages.text
    origin = w.recorder.origin_time
    sleep_until(origin - 0.04)  # a hand slightly ahead of the downbeat
    keyboard.send(mido.Message("note_on", note=48, velocity=90))
    sleep_until(origin + 0.5)  # the third beat of bar 3
    keyboard.send(mido.Message("note_on", note=72, velocity=100))
    sleep_until(origin + 0.75)
    keyboard.send(mido.Message("note_off", note=72))
    keyboard.send(mido.Message("note_off", note=48))
    sleep_until(origin + 1.0)
    qtbot.wait(100)  # the GUI runs meanwhile; the take is read when it stops
    w.act_record.trigger()
    assert not w.recorder.recording and not w.act_record.isChecked()

    before = {(n.start, n.pitch, n.duration, n.velocity) for n in piece.notes}
    added = sorted((n for n in w.doc.notes() if (n.start, n.pitch, n.duration, n.velocity) not in before),
                   key=lambda n: n.pitch)
    assert [n.pitch for n in added] == [48, 72], added
    early, third_beat = added
    assert early.start == 2 * BAR  # played just before the downbeat: on it
    assert abs(third_beat.start - (2 * BAR + 960)) <= 48, third_beat  # within 25 ms at 240 BPM
    assert abs(third_beat.duration - 480) <= 48, third_beat
    assert "Recorded 2 notes" in w.messages.text

    # the count-in: four clicks, the accent first, all before the take's first beat
    clicks = [(t, m) for t, m in daw.messages() if m.type == "note_on" and m.channel == 9 and m.velocity > 0]
    assert [m.note for _, m in clicks[:4]] == [76, 77, 77, 77]
    assert all(t < origin for t, _ in clicks[:4]) and clicks[0][0] > origin - 1.1
    # the piece plays from bar 3 meanwhile, after the count-in
    piece_on = [t for t, m in daw.messages() if m.type == "note_on" and m.channel != 9 and m.velocity > 0]
    assert piece_on and min(piece_on) > origin - 0.02

    w.undo()  # the take is one step
    assert len(w.doc) == len(piece.notes)


def test_recording_without_an_input_says_what_to_choose(make_window):
    w = make_window()
    w.act_record.trigger()
    assert not w.recorder.recording and not w.act_record.isChecked()
    assert "needs a MIDI input" in w.messages.text

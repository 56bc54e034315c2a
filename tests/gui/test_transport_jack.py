"""Play / stop / loop from the window through a REAL MIDI output (a private JACK server, a recorder in
another process as the DAW): the notes arrive, and stop releases every sounding note."""
from __future__ import annotations

import time
import uuid

import pytest

from core.live import JACK_BACKEND
from tests.gui.helpers import arrived, demo_score, onsets, onsets_heard
from tests.midi_checks import sounding
from tools.jack import MidiRecorder

pytestmark = pytest.mark.jack


def test_play_then_stop_releases_every_note(jack_window, qtbot):
    w, rx = jack_window
    assert w.transport.port_name and "no output" not in w.transport.port_name
    score = demo_score(bars=8, bpm=240)
    w.doc.load_score(score)
    w.toggle_play()
    assert w.transport.playing
    arrived(rx, lambda ms: sum(m.type == "note_on" for _, m in ms) >= 12, 10, "12 note-ons")
    qtbot.waitUntil(lambda: w.roll.playhead_tick > 0, timeout=3000)  # the playhead follows
    w.toggle_play()  # stop in the middle of sounding notes
    assert not w.transport.playing
    time.sleep(0.2)
    messages = rx.messages()
    heard = [m.note for _, m in messages if m.type == "note_on" and m.velocity > 0]
    assert onsets_heard(heard, onsets(score.notes)) >= 6  # the piece from its start, in order, up to the stop
    assert sounding(messages) == {}
    assert messages[-1][1].type == "control_change" and messages[-1][1].control == 123


def test_loop_wraps_and_keyboard_click_is_heard(jack_window, qtbot):
    w, rx = jack_window
    w.doc.load_score(demo_score(bars=2, bpm=300))
    w._set_loop(0, 1920, True)  # one bar of 4/4 at 300 BPM: 0.8 s
    w.toggle_play()
    qtbot.wait(2200)
    w.toggle_play()
    time.sleep(0.2)
    messages = rx.messages()
    first_bar = onsets([n for n in demo_score(bars=2, bpm=300).notes if n.start < 1920])
    heard = [m.note for _, m in messages if m.type == "note_on" and m.velocity > 0]
    # the first bar again and again, in order, at least twice whole; nothing of the second bar
    assert onsets_heard(heard, first_bar * 10) >= 2 * len(first_bar)
    assert sounding(messages) == {}

    before = len(rx.messages())
    w.roll.keyboard.keyPressed.emit(64)
    arrived(rx, lambda ms: any(m.type == "note_on" and m.note == 64 for _, m in ms[before:]), 5, "the clicked key")


def test_jam_answers_appear_in_the_roll_and_play(jam_window, qtbot):
    w, rx, player = jam_window
    w.midi_panel.jam_pause.setValue(0.4)
    w.midi_panel.jam_bars.setValue(1)
    from core.score import Note
    from musicapp import commands
    w.doc.undo_stack.push(commands.AddNotes(w.doc, [Note(0, 480, 48)]))  # the user's own note, drawn first
    states: list[str] = []
    w.jam.stateChanged.connect(states.append)  # queued to this thread after the answer's notes, as _on_note is
    w.midi_panel.jam.setChecked(True)
    assert w.jam.active, w.messages.text
    import mido
    # The tiny model has random weights: about 1 answer in 100 is a bar of rest (measured), and the jam then
    # listens again. So the player plays the phrase again, as a user would, until an answer has notes; every
    # phrase must be answered, and four rests in a row (~1e-8) fail.
    for phrase in range(4):
        before = len(states)
        for pitch in (60, 64, 67, 72):  # a short phrase, then a pause
            player.send(mido.Message("note_on", note=pitch, velocity=90))
            time.sleep(0.12)
            player.send(mido.Message("note_off", note=pitch, velocity=0))
        qtbot.waitUntil(lambda: bool(w.doc.preview.notes) or states[before:] == ["answering", "listening"],
                        timeout=60000)
        if w.doc.preview.notes:
            break
    assert w.doc.preview.notes, f"{phrase + 1} answers of a bar of rest in a row"
    assert len(w.doc) == 1  # answers are shown as a continuation, not written into the piece
    arrived(rx, lambda ms: any(m.type == "note_on" and m.velocity > 0 for _, m in ms), 20, "the jam's answer")
    w.midi_panel.jam.setChecked(False)
    assert not w.jam.active
    # the answer stays as a continuation to accept or reject, and is the first thing Undo takes back
    panel = w.continue_panel
    assert w.doc.preview.notes and panel.accept_button.isEnabled() and panel.reject_button.isEnabled()
    w.undo()
    assert w.doc.preview.is_empty() and len(w.doc) == 1
    w.redo()
    panel.accept_button.click()
    assert w.doc.preview.is_empty() and len(w.doc) > 1


@pytest.fixture
def jam_window(jack_server, monkeypatch, make_window, prefs, app_paths, qtbot):
    from core.live import midi_backend
    from tests.gui.models import make_tiny_checkpoint
    make_tiny_checkpoint(app_paths.resources / "tiny.pth")
    monkeypatch.setenv("MIDO_BACKEND", JACK_BACKEND)
    backend = midi_backend("jack")
    # a client name of its own: JACK renames a second "player" (another test's), and the app would listen to it
    client = f"player{uuid.uuid4().hex[:6]}"
    player = backend.open_output("out", client_name=client)
    with MidiRecorder() as rx:
        prefs.set("midi/output", rx.port_name)
        prefs.set("midi/input", f"{client}:out")
        w = make_window(start=True)
        qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
        time.sleep(0.1)
        yield w, rx, player
        w.jam.stop()
    player.close()


def test_send_midi_clock_while_playing(jack_window, qtbot):
    w, rx = jack_window
    w.midi_panel.clock.setCurrentIndex(w.midi_panel.clock.findData("send"))
    w.midi_panel._on_clock(w.midi_panel.clock.currentIndex())
    w.doc.load_score(demo_score(bars=2, bpm=120))
    w.toggle_play()
    qtbot.wait(600)
    w.toggle_play()
    arrived(rx, lambda ms: any(m.type == "stop" for _, m in ms), 5, "the clock's stop")
    types = [m.type for _, m in rx.messages()]
    assert types.count("start") == 1 and types.count("clock") >= 10  # 24 per beat at 120 BPM: ~28 in 0.6 s
    assert w.prefs.get("midi/clock") == "send"  # remembered for the next run


def test_continuation_plays_on_the_output_as_it_streams(jam_window, qtbot):
    w, rx, _ = jam_window
    w.doc.load_score(demo_score(bars=2, bpm=240))
    w.continue_panel.bars.setValue(1)
    w.continue_panel.variations.setValue(2)
    w.continue_panel.seed.setValue(5)
    w.seek(2 * 1920)
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda b: not b):
        w.continue_panel.continue_button.click()
    heard = w.doc.preview.variations[0]
    qtbot.waitUntil(lambda: not w.transport.playing, timeout=20000)
    ons = [m.note for _, m in rx.messages() if m.type == "note_on" and m.velocity > 0]
    assert sorted(ons) == sorted(n.pitch for n in heard)  # variation 1 is shown on request, not played
    # the last note-offs may still be in the recorder's pipe when playback ends
    assert sounding(rx.wait_for(lambda msgs: not sounding(msgs))) == {}

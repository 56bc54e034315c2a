"""The built-in synth from the window, heard through a REAL audio server (the suite's jackd, dummy driver) by
a JACK recorder: it is the default output, it is a choice in the MIDI tab, a MIDI port that cannot be opened
gives way to it, Play sounds and Stop silences, quitting while it sounds is clean, and Export audio writes
the piece as a WAV."""
from __future__ import annotations

import time
import wave

import numpy as np
import pytest

from tests.audio_checks import skip_without_synth_and_jack_client

skip_without_synth_and_jack_client()

from core.live import JACK_BACKEND  # noqa: E402
from musicapp.panels.midi_panel import SYNTH, VIRTUAL  # noqa: E402
from tests.gui.helpers import demo_score, output_settled  # noqa: E402

pytestmark = pytest.mark.jack


def level(cap, seconds: float) -> float:
    return cap.level(seconds)


def choose(panel, combo, data) -> None:
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)
    combo.activated.emit(index)  # as a click on the entry does


def test_synth_is_the_default_plays_stops_and_quits_cleanly(capture, make_window, qtbot):
    w = output_settled(qtbot, make_window(start=True))
    assert w.midi_panel.chosen_output() == SYNTH and w.transport.synth_on
    assert w.midi_panel.sound_box.isEnabled()
    process = w.transport.scheduler._process
    capture = capture()
    w.doc.load_score(demo_score(bars=8, bpm=200))
    capture.clear()
    pressed = time.perf_counter()
    w.toggle_play()
    qtbot.waitUntil(lambda: level(capture, 0.05) > 0.01, timeout=3000)
    heard_after = time.perf_counter() - pressed
    assert heard_after < 1.0, heard_after  # a newcomer hears the piece at once
    qtbot.wait(400)
    w.toggle_play()  # stop in the middle of sounding notes
    qtbot.wait(700)
    assert level(capture, 0.2) < 1e-3, "a note still sounds after Stop"

    w.toggle_play()
    qtbot.waitUntil(lambda: level(capture, 0.05) > 0.01, timeout=3000)
    w.close()  # quit while it sounds: the synth's process ends, nothing hangs
    assert not process.is_alive()


def test_choosing_outputs_in_the_midi_tab(capture, make_window, prefs, qtbot, monkeypatch):
    monkeypatch.setenv("MIDO_BACKEND", JACK_BACKEND)  # the virtual MIDI port, on the suite's JACK server
    prefs.set("midi/output", VIRTUAL)
    w = output_settled(qtbot, make_window(start=True))
    panel = w.midi_panel
    assert panel.output.itemText(0) == "Built-in synth (General MIDI)"
    assert not w.transport.synth_on and not panel.sound_box.isEnabled()
    choose(panel, panel.output, SYNTH)
    assert w.transport.starting and panel.sound_box.isEnabled()  # at once: the window does not wait for it
    output_settled(qtbot, w)
    assert w.transport.synth_on and panel.sound_box.isEnabled() and prefs.get("midi/output") == SYNTH
    capture = capture()
    panel.volume.setValue(30)
    assert w.transport.volume == pytest.approx(0.3) and prefs.get("audio/volume", 0, int) == 30
    capture.clear()
    w.transport.audition(69)
    qtbot.waitUntil(lambda: level(capture, 0.1) > 0.005, timeout=3000)
    choose(panel, panel.output, VIRTUAL)
    assert not w.transport.synth_on


def test_a_midi_port_that_cannot_open_gives_way_to_the_synth(capture, make_window, prefs, qtbot):
    prefs.set("midi/output", "No Such Synth:port 0")
    w = output_settled(qtbot, make_window(start=True))
    assert w.transport.synth_on and w.midi_panel.sound_box.isEnabled()  # its volume applies
    assert "No MIDI output" in w.messages.text and "built-in synth instead" in w.messages.text


def test_export_audio_writes_the_piece(make_window, tmp_path, qtbot):
    w = make_window()
    w.doc.load_score(demo_score(bars=2, bpm=120))  # 4 s
    path = tmp_path / "piece.wav"
    assert w.export_audio_to(str(path))
    with wave.open(str(path)) as f:
        seconds = f.getnframes() / f.getframerate()
        samples = np.frombuffer(f.readframes(f.getnframes()), "<i2")
    assert 4.0 <= seconds < 8.0 and np.abs(samples).max() > 1000
    assert not w.export_audio_to(str(tmp_path / "no" / "such" / "dir.wav"))
    assert "Could not export" in w.messages.text


def test_metronome_counts_in_one_bar_then_clicks(capture, make_window, prefs, qtbot):
    from core.live.metronome import count_in
    from tests.audio_checks import first_sound_after

    w = output_settled(qtbot, make_window(start=True))
    capture = capture()
    w.act_metronome.trigger()
    assert w.transport.metronome and prefs.get("transport/metronome", False, bool)
    score = demo_score(bars=2, bpm=240)
    w.doc.load_score(score)
    qtbot.wait(300)
    capture.clear()
    w.toggle_play()
    piece_starts = w.transport._current.player.timeline.time_at(0)
    qtbot.wait(2000)
    w.toggle_play()
    audio, t0 = capture.audio()
    _, bar = count_in(score, 0)
    first = first_sound_after(audio, t0, piece_starts - bar - 0.1)
    assert bar == 1.0 and abs(first - (piece_starts - bar)) < 0.03  # the count-in's first click, on time
    w.act_metronome.trigger()
    assert not w.transport.metronome

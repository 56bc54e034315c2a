"""First contact with the MIDI systems: a fresh start opens its port where something runs (a JACK server
before an ALSA sequencer that is missing), and says in plain words what to do when nothing does."""
from __future__ import annotations

import pytest

from core import live
from musicapp.transport import SilentPort
from tests.gui.helpers import output_settled


@pytest.mark.jack
def test_a_fresh_start_picks_the_running_jack_server(jack_server, monkeypatch, make_window, prefs, qtbot):
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    assert prefs.midi_api is None  # never chosen: a fresh start
    w = output_settled(qtbot, make_window(start=True))
    assert w.midi_panel.chosen_system() == "jack"
    assert w.transport.synth_on  # a fresh start sounds through the built-in synth (on that JACK server here)
    assert w.messages.text == ""  # nothing went wrong, so nothing is said
    assert prefs.midi_api is None  # detected, not chosen: tomorrow's start detects again


def test_with_nothing_running_the_user_reads_what_to_do(monkeypatch, make_window, prefs, qtbot):
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "no-such-server-here")  # no JACK server to reach
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    if "alsa" in live.midi_apis() and not live.list_ports("alsa").reason:
        pytest.skip("this machine has a working ALSA sequencer")
    w = output_settled(qtbot, make_window(start=True))  # the synth cannot play either: said once it fails
    said = w.messages.text
    assert said == live.NO_MIDI_SYSTEM
    assert "Refresh ports" in said and "::" not in said  # plain words, no rtmidi class names
    assert "::" not in w.midi_panel.port_note.text()
    assert isinstance(w.transport.port, SilentPort)


def test_port_errors_are_said_as_what_to_do():
    raw = "MidiInAlsa::initialize: error creating ALSA sequencer client object."
    assert "modprobe snd-seq" in live.ports.plain_reason("alsa", raw)
    assert "JACK server" in live.ports.plain_reason("jack", "MidiInJack::initialize: JACK server not running?")
    assert live.ports.plain_reason("alsa", "something else") == "something else"

"""The MIDI tab with real ports (a private JACK server, a recorder in another process as the DAW): the MIDI
system is a remembered choice, "Refresh ports" keeps a DAW's connection to the app's virtual port, the
input list never offers the app's own output, and playing with no output says so once."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from core import live
from musicapp.transport import SilentPort
from tests.gui.helpers import demo_score
from tools.jack import MidiRecorder


def heard(rx, pitch: int, since: int = 0, timeout: float = 5.0) -> bool:
    msgs = rx.wait_for(lambda ms: any(m.type == "note_on" and m.note == pitch for _, m in ms[since:]), timeout)
    return any(m.type == "note_on" and m.note == pitch for _, m in msgs[since:])


def own_sources() -> list[str]:
    return [n for n in live.midi_backend("jack").get_input_names() if live.is_own_port(n)]


@pytest.mark.jack
def test_refresh_keeps_the_daws_connection_to_the_virtual_port(jack_server, monkeypatch, make_window, prefs, qtbot):
    if shutil.which("jack_connect") is None:
        pytest.skip("jack_connect is not installed (it comes with jackd2)")
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    prefs.midi_api = "jack"  # chosen in an earlier run
    with MidiRecorder() as daw:
        w = make_window(start=True)
        assert w.midi_panel.chosen_system() == "jack" and w.midi_panel.chosen_output() == "__virtual__"
        (source,) = own_sources()
        # the DAW connects itself to the app's port, as a user does in QjackCtl / the DAW's MIDI inputs
        subprocess.run(["jack_connect", source, daw.port_name], check=True, timeout=30)
        w.transport.audition(64)
        assert heard(daw, 64, timeout=10)

        port_before = w.transport.port
        before = len(daw.messages())
        w.midi_panel.refresh.click()
        w.transport.audition(67)
        assert heard(daw, 67, since=before), "the DAW lost its connection on Refresh"
        assert w.transport.port is port_before and own_sources() == [source]  # the same port: only lists refresh

        # the app's own output is a source JACK lists, but never an input the app offers (a feedback loop)
        inputs = [w.midi_panel.input.itemData(i) for i in range(w.midi_panel.input.count())]
        assert source not in inputs and not any(live.is_own_port(n) for n in inputs if n)


@pytest.mark.jack
def test_midi_system_choice_opens_ports_there_and_is_remembered(jack_server, monkeypatch, make_window, prefs,
                                                                 qtbot):
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    with MidiRecorder() as daw:
        w = make_window(start=True)
        panel = w.midi_panel
        systems = [panel.system.itemData(i) for i in range(panel.system.count())]
        assert systems == live.midi_apis() and "jack" in systems
        assert panel.chosen_system() == live.choose_midi_api()[0] == "jack"  # the running server
        index = panel.system.findData("jack")
        panel.system.setCurrentIndex(index)
        panel.system.activated.emit(index)  # as a click on the entry does
        assert prefs.midi_api == "jack"
        assert w.transport.target == (None, "jack") and not isinstance(w.transport.port, SilentPort)
        outputs = [panel.output.itemData(i) for i in range(panel.output.count())]
        assert daw.port_name in outputs  # the JACK destinations are listed now
        w.close()

        prefs.set("midi/output", daw.port_name)
        w2 = make_window(start=True)
        assert w2.midi_panel.chosen_system() == "jack"  # remembered between runs
        assert w2.transport.target == (daw.port_name, "jack")
        w2.transport.audition(72)
        assert heard(daw, 72, timeout=10)


def test_playing_with_no_output_says_so_once(make_window, qtbot):
    w = make_window(start=True)
    said = []
    w.transport.error.connect(said.append)
    w.transport.open_output("No Such Synth:port 0")  # fails on any MIDI system: playback is silent
    assert len(said) == 1 and "No MIDI output" in said[0]
    w.messages.hide()  # the user closed that message (or others replaced it) long before playing
    said.clear()
    w.doc.load_score(demo_score(bars=1, bpm=600))
    for _ in range(2):
        w.toggle_play()
        qtbot.waitUntil(lambda: not w.transport.playing, timeout=5000)
    w.transport.audition(60)
    assert len(said) == 1 and "Playback is silent" in said[0] and "MIDI tab" in said[0]
    assert "Playback is silent" in w.messages.text

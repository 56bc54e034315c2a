"""The MIDI system (ALSA, JACK, CoreMIDI, WinMM) as a choice: by name in core.live and `--midi-api` on the
CLI; the app's own ports are never offered back to it. Real ports where ports matter: a private JACK
server (see conftest) with a recorder in another process standing in for the DAW."""
from __future__ import annotations

import sys
import uuid

import pytest

from core import live
from core.cli import MIDI_API_CHOICES, build_parser, main
from core.score import Note, Score, TempoChange
from tools.jack import MidiRecorder


def test_cli_choices_are_the_systems_core_knows():
    assert set(MIDI_API_CHOICES) == set(live.MIDI_APIS)
    for verb in (["ports"], ["live", "--model", "m", "--prompt", "p", "--virtual"],
                 ["jam", "--model", "m", "--in-port", "a", "--out-port", "b"]):
        assert build_parser().parse_args([*verb, "--midi-api", "jack"]).midi_api == "jack"
        with pytest.raises(SystemExit):
            build_parser().parse_args([*verb, "--midi-api", "oss"])


def test_a_system_this_machine_lacks_is_a_clear_error(capsys):
    missing = [k for k in live.MIDI_APIS if k not in live.midi_apis()]
    if not missing:
        pytest.skip("every MIDI system is compiled in here")
    label = live.midi_api_label(missing[0])
    with pytest.raises(live.PortError, match=f"{label} is not available here"):
        live.open_output("x", backend=missing[0])
    assert "not available here" in live.list_ports(missing[0]).reason  # listing never raises
    assert main(["ports", "--midi-api", missing[0]]) == 0
    assert f"MIDI system: {label}" in capsys.readouterr().out


def test_default_system_follows_mido_backend(monkeypatch):
    monkeypatch.setenv("MIDO_BACKEND", live.JACK_BACKEND)
    assert live.default_midi_api() == "jack"
    monkeypatch.delenv("MIDO_BACKEND")
    assert live.default_midi_api() == (live.midi_apis() or [None])[0]
    if sys.platform.startswith("linux"):
        assert live.midi_apis()[:2] == ["alsa", "jack"]  # the platform's own system first
    assert not live.supports_virtual_ports("winmm") and live.supports_virtual_ports("jack")


def test_own_ports_are_recognised():
    for own in ("RWKV-Music:RWKV-Music", "RWKV-Music-01:RWKV-Music", "RWKV-Music:RWKV-Music 128:0", "RWKV-Music"):
        assert live.is_own_port(own), own
    for other in ("RWKV-Musical:out", "rx:in", "Midi Through:Midi Through Port-0 14:0", "my RWKV-Music"):
        assert not live.is_own_port(other), other


@pytest.mark.jack
def test_jack_listing_leaves_out_the_apps_own_virtual_output(jack_server, monkeypatch):
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    backend = live.midi_backend("jack")
    keyboard = f"kbd{uuid.uuid4().hex[:6]}"
    player = backend.open_output("out", client_name=keyboard)  # a controller keyboard, say
    own = live.open_output(None, backend="jack")  # the app's virtual port, as the GUI opens it
    try:
        raw = backend.get_input_names()
        assert any(live.is_own_port(n) for n in raw)  # JACK does list it as a source...
        listing = live.list_ports("jack")
        assert not any(live.is_own_port(n) for n in listing.inputs)  # ...the app never offers it back
        assert f"{keyboard}:out" in listing.inputs
    finally:
        own.close()
        player.close()


@pytest.mark.jack
def test_cli_ports_and_live_on_jack_by_option(jack_server, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """No MIDO_BACKEND: `--midi-api jack` alone reaches the JACK server."""
    from core.midi import write_midi

    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    prompt = Score([Note(i * 240, 240, 60 + i % 7, 90) for i in range(8)], [TempoChange(0, 240)])
    src = tmp_path / "prompt.mid"
    write_midi(prompt, src)
    with MidiRecorder() as rx:
        assert main(["ports", "--midi-api", "jack"]) == 0
        out = capsys.readouterr().out
        assert "MIDI system: JACK" in out and rx.port_name in out.split("outputs:", 1)[1]
        assert main(["live", "--model", tiny_checkpoint, "--prompt", str(src), "--bars", "1",
                     "--out-port", rx.port_name, "--midi-api", "jack"]) == 0
        msgs = rx.wait_for(lambda ms: bool(ms) and ms[-1][1].type == "control_change" and ms[-1][1].control == 123)
    assert any(m.type == "note_on" for _, m in msgs)
    assert "first note" in capsys.readouterr().out

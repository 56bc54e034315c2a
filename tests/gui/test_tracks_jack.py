"""Mute and solo in the Tracks panel, heard through a REAL MIDI output (a private JACK server, a recorder in
another process as the DAW): a bar of a POP909 song loops and what arrives is exactly the audible tracks'."""
from __future__ import annotations

import pathlib
import time

import pytest

from core.midi import read_midi
from musicapp.panels.tracks_panel import MUTE, SOLO
from tests.gui.helpers import arrived
from tests.midi_checks import sounding_at_a_synth

pytestmark = pytest.mark.jack

POP = pathlib.Path(__file__).resolve().parents[1] / "data" / "pop909" / "001.mid"  # MELODY, BRIDGE, PIANO


def a_bar_where_the_melody_has_pitches_of_its_own():
    """The first bar where all three tracks play and the melody has pitches no other track has there:
    (start, end, the pitches each track starts in it)."""
    score = read_midi(POP)[0]
    bar = score.time_signatures[0].bar_ticks
    for k in range(score.end_tick // bar):
        a, z = k * bar, (k + 1) * bar
        melody, bridge, piano = ({n.pitch for n in t.notes if a <= n.start < z} for t in score.tracks())
        if melody and bridge and piano and melody - bridge - piano and (bridge | piano) - melody:
            return a, z, melody, bridge, piano
    raise AssertionError("no such bar")


def heard_while_looping(w, rx, expected: set, loop_s: float) -> set:
    """Loop the bar from its start until every expected pitch was heard and one whole pass has played;
    the pitches of every note-on that arrived."""
    start = len(rx.messages())
    w.seek(w.roll.loop[0])
    w.toggle_play()
    began = time.perf_counter()
    arrived(rx, lambda ms: expected <= {m.note for _, m in ms[start:] if m.type == "note_on" and m.velocity},
            15, f"the pitches {sorted(expected)}")
    time.sleep(max(0.0, loop_s + 0.3 - (time.perf_counter() - began)))
    w.toggle_play()
    time.sleep(0.2)
    return {m.note for _, m in rx.messages()[start:] if m.type == "note_on" and m.velocity}


def test_mute_and_solo_decide_what_the_output_receives(jack_window, qtbot):
    w, rx = jack_window
    assert w.open_file(str(POP))
    panel = w.tracks_panel
    assert [r.track.name for r in panel.rows] == ["MELODY", "BRIDGE", "PIANO"]
    a, z, melody, bridge, piano = a_bar_where_the_melody_has_pitches_of_its_own()
    others = bridge | piano
    w._set_loop(a, z, True)
    loop_s = w.doc.meta.seconds_at(z) - w.doc.meta.seconds_at(a)

    assert heard_while_looping(w, rx, melody | others, loop_s) == melody | others  # everything plays
    panel.table.cellWidget(0, MUTE).click()  # MELODY muted
    assert heard_while_looping(w, rx, others, loop_s) == others
    panel.table.cellWidget(0, MUTE).click()
    panel.table.cellWidget(0, SOLO).click()  # only MELODY
    assert heard_while_looping(w, rx, melody, loop_s) == melody
    panel.table.cellWidget(2, MUTE).click()  # muting another track changes nothing while MELODY is soloed
    assert heard_while_looping(w, rx, melody, loop_s) == melody
    panel.table.cellWidget(0, SOLO).click()  # PIANO stays muted
    assert heard_while_looping(w, rx, melody | bridge, loop_s) == melody | bridge
    # the last note-offs may be in the pipe
    assert sounding_at_a_synth(rx.wait_for(lambda ms: not sounding_at_a_synth(ms))) == {}


def test_muting_while_it_plays_silences_the_track_from_then_on(jack_window, qtbot):
    w, rx = jack_window
    assert w.open_file(str(POP))
    a, z, melody, bridge, piano = a_bar_where_the_melody_has_pitches_of_its_own()
    others = bridge | piano
    w._set_loop(a, z, True)
    loop_s = w.doc.meta.seconds_at(z) - w.doc.meta.seconds_at(a)
    w.seek(a)
    w.toggle_play()
    arrived(rx, lambda ms: any(m.type == "note_on" and m.velocity for _, m in ms), 10, "the first notes")
    clicked = time.perf_counter()
    w.tracks_panel.table.cellWidget(0, MUTE).click()
    assert w.transport.playing  # it goes on, with the new mix
    time.sleep(2 * loop_s + 0.3)  # two passes over the bar
    w.toggle_play()
    time.sleep(0.2)
    messages = rx.messages()
    # the mix changes in place (no restart): what arrives from a JACK cycle after the click is the new mix
    after = next(k for k, (t, m) in enumerate(messages) if t >= clicked + 0.05)
    heard = {m.note for _, m in messages[after:] if m.type == "note_on" and m.velocity}
    assert heard and heard <= others and not heard & (melody - others)
    # the last note-offs may be in the pipe
    assert sounding_at_a_synth(rx.wait_for(lambda ms: not sounding_at_a_synth(ms))) == {}


def test_a_track_keeps_its_channel_when_another_is_muted(jack_window, qtbot, tmp_path):
    from core.score import Note
    from musicapp import editing
    w, rx = jack_window
    assert w.open_file(str(POP))
    a, z, *_ = a_bar_where_the_melody_has_pitches_of_its_own()
    # the model's notes (no track): a guitar and a violin line, each a new track with a channel of its own
    editing.add(w.doc, [Note(a, 240, 100, 90, program=24), Note(a + 240, 240, 104, 90, program=40)])
    assert w.save_to(str(tmp_path / "saved.mid"))
    channel = {t.name: t.channel for t in read_midi(tmp_path / "saved.mid")[0].tracks()}
    assert channel["Acoustic Guitar (nylon)"] != channel["Violin"]
    panel = w.tracks_panel
    panel.refresh()
    panel.set_muted([r.track.name for r in panel.rows].index("Acoustic Guitar (nylon)"), True)
    w._set_loop(a, z, True)
    start = len(rx.messages())
    heard_while_looping(w, rx, {104}, w.doc.meta.seconds_at(z) - w.doc.meta.seconds_at(a))
    ons = [m for _, m in rx.messages()[start:] if m.type == "note_on" and m.velocity and m.note in (100, 104)]
    assert ons and {(m.note, m.channel) for m in ons} == {(104, channel["Violin"])}

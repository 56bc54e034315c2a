"""Regenerate bars and add a part in the app, with a small real RWKV-7 (tokenizer v2, with infill tokens):
the bars chosen in the ruler (or of the selected notes) stream into the roll in the preview colour; every
note outside them stays as it was, locked notes survive; accept / reject / undo / variations; a part becomes
a track of its instrument (read back from the saved file with mido); a model without infill tokens gets a
message. The MIDI output through a real JACK loopback: the bars play with the notes that stay, and a stop
releases every note."""
from __future__ import annotations

import time

import mido
import pytest
from PySide6.QtCore import QPoint, Qt

from core.live import JACK_BACKEND
from musicapp.pianoroll.scene import PREVIEW_ID
from tests.gui.helpers import write_demo
from tests.gui.models import GapMeter, make_tiny_checkpoint
from tests.midi_checks import sounding
from tools.jack import MidiRecorder

BAR = 1920  # the demo is in 4/4


def fields(n):
    return (n.start, n.duration, n.pitch, n.velocity, n.program, n.drum, n.track)


def snapshot(doc) -> dict:
    """The document's notes by id, every field (the track too)."""
    return {i: fields(n) for i, n in doc.items()}


def drag_ruler(qtbot, w, start_tick: int, end_tick: int) -> None:
    """Drag over the ruler from one tick to another, as the user chooses bars."""
    ruler, view = w.roll.ruler, w.roll.view
    y = ruler.height() // 2
    a, b = (QPoint(int(view.x_of_tick(t)) + 2, y) for t in (start_tick, end_tick))
    qtbot.mousePress(ruler, Qt.LeftButton, pos=a)
    qtbot.mouseMove(ruler, QPoint((a.x() + b.x()) // 2, y))
    qtbot.mouseMove(ruler, b)
    qtbot.mouseRelease(ruler, Qt.LeftButton, pos=b)


def run(qtbot, w, trigger) -> None:
    with qtbot.waitSignal(w.generation.busyChanged, timeout=180000, check_params_cb=lambda busy: not busy):
        trigger()
        assert w.generation.generating


def preview_items(w):
    return [i for i in w.roll.scene.preview_items if i.data(0) == PREVIEW_ID]


@pytest.fixture
def infill_window(make_window, app_paths, qtbot, tmp_path):
    make_tiny_checkpoint(app_paths.resources / "tiny-v2.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=180000)
    assert w.generation.generator.tokenizer.infill
    write_demo(tmp_path / "demo.mid", bars=8)  # a real file: a piano track and a bass track
    assert w.open_file(str(tmp_path / "demo.mid"))
    w.roll.zoom_to_fit()
    return w


def test_regenerate_ruler_bars_keeps_everything_else_and_locked_notes(infill_window, qtbot):
    w = infill_window
    doc, panel = w.doc, w.continue_panel
    panel.variations.setValue(2)
    panel.seed.setValue(21)
    drag_ruler(qtbot, w, 2 * BAR + 100, 4 * BAR - 100)  # inside bars 3-4: the whole bars are taken
    assert w.generation.infill_range() == (2 * BAR, 4 * BAR)

    # lock two notes of bar 3 with the key; the roll draws them locked
    in_range = sorted(i for i, n in doc.items() if 2 * BAR <= n.start < 4 * BAR)
    lock = [i for i in in_range if doc.note(i).program == 0][:1] + [i for i in in_range if doc.note(i).program == 32][:1]
    w.roll.scene.set_selection(lock)
    w.activateWindow()
    qtbot.keyClick(w.roll.view, Qt.Key_L, Qt.ShiftModifier)
    assert doc.locked_ids() == sorted(lock)
    assert all(w.roll.scene.is_locked_drawn(i) for i in lock)
    assert not any(w.roll.scene.is_locked_drawn(i) for i in in_range if i not in lock)
    assert w.act_lock in w.roll.view.context_menu().actions()  # also in the roll's right-click menu
    w.undo()  # locking is undoable, and changes nothing in the file
    assert doc.locked_ids() == [] and not doc.is_modified()
    w.redo()
    assert doc.locked_ids() == sorted(lock) and not doc.is_modified()
    w.roll.scene.set_selection(())

    before = snapshot(doc)
    streamed = []
    doc.previewNoteAdded.connect(lambda v, n: streamed.append((v, n)))
    gaps = GapMeter()
    gaps.start()
    run(qtbot, w, w.act_regenerate_bars.trigger)  # the toolbar's Regenerate bars
    gaps.stop()
    assert gaps.max_stall < 0.05, f"while regenerating: {gaps.report()}"
    preview = doc.preview
    assert streamed and {v for v, _ in streamed} <= {0, 1}
    assert (preview.start_tick, preview.end_tick) == (2 * BAR, 4 * BAR)
    assert all(2 * BAR <= n.start and n.end <= 4 * BAR for v in preview.variations.values() for n in v)
    assert sorted(preview.replaced) == sorted(set(in_range) - set(lock))  # every instrument of the range
    assert len(preview_items(w)) == len(preview.notes)  # drawn in the preview colour
    assert all(w.roll.scene.items_by_id[i].opacity() < 1 for i in preview.replaced)  # what it replaces: dimmed
    assert snapshot(doc) == before  # nothing changes until it is accepted

    # variations switch (undoable)
    assert set(preview.variations) == {0, 1}
    w.generation.pick(1)
    assert doc.preview.current == 1 and len(preview_items(w)) == len(doc.preview.variations[1])
    w.undo()
    assert doc.preview.current == 0
    w.generation.pick(1)
    chosen = [fields(n)[:6] for n in doc.preview.notes]

    panel.accept_button.click()
    after = snapshot(doc)
    outside = {i: f for i, f in before.items() if not 2 * BAR <= f[0] < 4 * BAR}
    assert {i: after[i] for i in outside} == outside  # every note outside the bars: the same, in its track
    assert {i: after[i] for i in lock} == {i: before[i] for i in lock}  # locked notes survive
    assert not set(preview.replaced) & set(after)
    added = [f for i, f in after.items() if i not in before]
    # the chosen notes; one re-struck while it sounds in its track ends there (a file holds it in one track)
    got = sorted((f[:1] + f[2:6], f[1]) for f in added)
    want = sorted((f[:1] + f[2:6], f[1]) for f in chosen)
    assert [k for k, _ in got] == [k for k, _ in want] and all(g <= w for (_, g), (_, w) in zip(got, want))
    assert all(f[6] == before[lock[0]][6] for f in added if f[4] == 0)  # new piano notes: the piano's track
    assert doc.preview.is_empty() and not preview_items(w)

    w.undo()  # accept is one step
    assert snapshot(doc) == before and [fields(n)[:6] for n in doc.preview.notes] == chosen
    panel.reject_button.click()
    assert doc.preview.is_empty() and snapshot(doc) == before
    w.undo()
    assert [fields(n)[:6] for n in doc.preview.notes] == chosen
    w.undo()  # the pick
    w.undo()  # the regenerated bars themselves
    assert doc.preview.is_empty() and snapshot(doc) == before


def test_regenerate_again_with_the_same_seed_and_only_the_allowed_instrument(infill_window, qtbot):
    """Regenerate (the panel's button) asks for the same bars again; an instrument left out of the allowed
    ones is kept in those bars."""
    w = infill_window
    doc, panel = w.doc, w.continue_panel
    panel.variations.setValue(1)
    panel.seed.setValue(5)
    for i in range(panel.instruments.count()):  # only the piano may be written
        item = panel.instruments.item(i)
        item.setCheckState(Qt.Checked if item.data(Qt.UserRole) == (0, False) else Qt.Unchecked)
    panel.infill.from_notes.setChecked(True)
    bass_bar5 = [i for i, n in doc.items() if n.program == 32 and 4 * BAR <= n.start < 5 * BAR]
    w.roll.scene.set_selection(bass_bar5)
    assert w.generation.infill_range() == (4 * BAR, 5 * BAR)  # the bars of the selected notes
    run(qtbot, w, panel.infill.regenerate_button.click)
    first = [fields(n)[:6] for n in doc.preview.notes]
    assert first and all(n.program == 0 for n in doc.preview.notes)
    assert not set(doc.preview.replaced) & set(bass_bar5)  # the bass stays
    w.roll.scene.set_selection(())  # Regenerate repeats the request, whatever is selected now
    run(qtbot, w, panel.regenerate_button.click)
    assert [fields(n)[:6] for n in doc.preview.notes] == first
    assert (doc.preview.start_tick, doc.preview.end_tick) == (4 * BAR, 5 * BAR)
    w.undo()
    assert [fields(n)[:6] for n in doc.preview.notes] == first


def test_add_part_makes_a_track_of_the_instrument_and_saves_it(infill_window, qtbot, tmp_path):
    w = infill_window
    doc, panel = w.doc, w.continue_panel
    panel.variations.setValue(1)
    panel.seed.setValue(3)
    panel.infill.set_part_instrument(33)  # Electric Bass (finger)
    drag_ruler(qtbot, w, 0, 4 * BAR)
    before, tracks_before = snapshot(doc), len(doc.tracks)
    run(qtbot, w, panel.infill.add_part_button.click)
    part = doc.preview.notes
    assert part and all(n.instrument == (33, False) and n.start < 4 * BAR for n in part)
    assert doc.preview.part.label == "Electric Bass (finger)"
    # a bass line, whatever the model: one note at a time in the bass register (core.idiom)
    from core import idiom
    assert idiom.most_at_once(part) == 1 and all(28 <= n.pitch <= 55 for n in part)
    assert doc.placement_plan().removed == [] and snapshot(doc) == before
    heard = doc.to_score(include_preview=True)  # what Play plays while the part is shown: it and the rest
    assert sorted(fields(n)[:6] for n in heard.notes) == sorted([f[:6] for f in before.values()] +
                                                                [fields(n)[:6] for n in part])
    panel.accept_button.click()
    assert len(doc.tracks) == tracks_before + 1 and doc.tracks[-1].instrument == (33, False)
    after = snapshot(doc)
    assert {i: after[i] for i in before} == before  # no existing note changed
    new = [f for i, f in after.items() if i not in before]
    assert len(new) == len(part) and all(f[6] == tracks_before for f in new)  # in the new track
    assert sorted(n.instrument for n in w.doc.to_score().notes if n.program == 33) == [(33, False)] * len(part)

    path = tmp_path / "with-part.mid"
    assert w.save_to(str(path))
    mid = mido.MidiFile(str(path))  # an independent reader
    changes = [(t, m.channel) for t in mid.tracks for m in t if m.type == "program_change" and m.program == 33]
    assert len(changes) == 1  # one track (a key struck again while it sounds goes to a layer track on its channel)
    track, channel = changes[0]
    assert any(m.type == "track_name" and m.name == "Electric Bass (finger)" for m in track)
    assert sum(m.type == "note_on" and m.velocity > 0 and m.channel == channel
               for t in mid.tracks for m in t) == len(part)
    assert all(m.channel != channel for t in mid.tracks if t is not track for m in t
               if m.type == "note_on" and m.velocity > 0 and m.note not in {n.pitch for n in part})

    w.undo()  # the track and its notes go in one step
    assert len(doc.tracks) == tracks_before and snapshot(doc) == before


def test_a_model_without_infill_tokens_says_so(make_window, app_paths, qtbot, tmp_path):
    make_tiny_checkpoint(app_paths.resources / "tiny-v1.pth", tokenizer_version="rwkvmusic-tok-1")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=180000)
    write_demo(tmp_path / "demo.mid", bars=4)
    w.open_file(str(tmp_path / "demo.mid"))
    w._set_loop(0, 2 * BAR, True)
    w.act_regenerate_bars.trigger()
    assert not w.generation.generating and w.doc.preview.is_empty()
    text = w.messages.text
    assert "rwkvmusic-tok-1" in text and "infill" in text
    w.continue_panel.infill.add_part_button.click()
    assert not w.generation.generating and w.doc.preview.is_empty()


@pytest.mark.jack
def test_regenerated_bars_play_with_the_kept_notes_and_stop_releases_every_note(
        jack_server, monkeypatch, make_window, prefs, app_paths, qtbot, tmp_path):
    make_tiny_checkpoint(app_paths.resources / "tiny-v2.pth")
    monkeypatch.setenv("MIDO_BACKEND", JACK_BACKEND)
    with MidiRecorder() as rx:
        prefs.set("midi/output", rx.port_name)
        w = make_window(start=True)
        qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=180000)
        time.sleep(0.1)  # JACK makes the connection in its next process cycle
        write_demo(tmp_path / "demo.mid", bars=16, bpm=90)
        w.open_file(str(tmp_path / "demo.mid"))
        panel = w.continue_panel
        panel.variations.setValue(1)
        panel.seed.setValue(9)
        for i in range(panel.instruments.count()):  # the piano is written again, the bass stays and plays
            item = panel.instruments.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) == (0, False) else Qt.Unchecked)
        w._set_loop(2 * BAR, 16 * BAR, True)
        bass = {n.pitch for n in w.doc.notes() if n.program == 32 and n.start >= 2 * BAR}
        with qtbot.waitSignal(w.generation.busyChanged, timeout=180000, check_params_cb=lambda b: not b):
            w.act_regenerate_bars.trigger()
            qtbot.waitUntil(lambda: w.transport.playing, timeout=60000)
            rx.wait_for(lambda ms: sum(m.type == "note_on" and m.velocity > 0 for _, m in ms) >= 6, timeout=60)
            w.generation.stop()  # in the middle of sounding notes
        assert not w.transport.playing
        time.sleep(0.3)
        messages = rx.messages()
        ons = [m for _, m in messages if m.type == "note_on" and m.velocity > 0]
        assert len(ons) >= 6, f"{len(ons)} note-ons heard"
        programs = {m.channel: m.program for _, m in messages if m.type == "program_change"}
        assert any(programs.get(m.channel) == 32 and m.note in bass for m in ons)  # the kept bass plays along
        assert any(programs.get(m.channel, 0) == 0 for m in ons)  # and the regenerated piano
        assert sounding(messages) == {}
        assert messages[-1][1].type == "control_change" and messages[-1][1].control == 123

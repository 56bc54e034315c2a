"""What a musician hit in a hands-on session (issue 13, piano roll): where Continue puts its notes and what
Accept does to the notes after it, the preview's colour, the playhead on the grid, stale selections,
drops on the roll, the modified mark, old messages, zoom, the window's size on a laptop, the fine-tune
base model, and settings remembered between runs. Real files, real events, offscreen."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from core import arrange, library
from core.midi import read_midi, write_midi
from core.score import Note
from musicapp import commands
from musicapp.document import Preview
from musicapp.pianoroll import grid
from musicapp.pianoroll.scene import PREVIEW_ID
from musicapp.settings import Preferences
from tests.folders import CORPUS
from tests.gui.helpers import demo_score, write_demo
from tests.gui.models import make_tiny_checkpoint

BAR = 1920


def show_continuation(w, start: int, bars: int, pitch: int = 96) -> list[Note]:
    """A continuation over `bars` bars from `start`, shown as the generation controller shows a finished
    stream (one undo step that only sets the preview)."""
    notes = [Note(start + k * 480, 480, pitch, 100) for k in range(bars * 4)]
    new = Preview({0: notes}, 0, start, start + bars * BAR)
    w.doc.set_preview(new)
    w.doc.undo_stack.push(commands.SetPreview(w.doc, Preview(), new, "Continue", already_applied=True))
    return notes


def shown_rect(w, note_id):
    """Where the roll draws a note, in scene units (ticks, rows)."""
    item = w.roll.scene.items_by_id[note_id]
    return item.mapRectToScene(item.rect())


# --- Continue: where it goes, how it looks, what Accept does ------------------------------------------
def test_preview_colour_is_no_instruments_colour():
    preview = grid.PREVIEW_FILL.hue()
    for program in range(128):
        hue = grid.instrument_colour(program, False).hue()
        assert min(abs(hue - preview), 360 - abs(hue - preview)) >= 20, program
    assert len({grid.instrument_colour(p, False).name() for p in range(128)}) == 128  # still apart
    assert grid.instrument_colour(0, True).hue() == -1 or grid.instrument_colour(0, True).saturation() < 40


def test_ruler_click_puts_the_playhead_on_the_grid(make_window, qtbot):
    w = make_window()
    w.snap_box.setCurrentIndex(w.snap_box.findData(120))  # 1/16
    view = w.roll.view
    view.set_zoom(px_per_tick=0.1)
    view.horizontalScrollBar().setValue(0)
    x = int(view.x_of_tick(1000))  # between the 1/16 lines at 960 and 1080
    qtbot.mouseClick(w.roll.ruler, Qt.LeftButton, Qt.NoModifier, QPoint(x, 10))
    assert w.roll.playhead_tick == 960


def test_continue_follows_the_last_note_before_the_playhead(make_window):
    w = make_window()
    w.doc.load_score(demo_score(bars=4))  # notes end just before bar 5 (7680)
    w.seek(0)  # the playhead at the start, as after opening a file
    assert w.generation.start_tick() == 4 * BAR  # after the piece, not over it
    w.seek(12 * BAR)  # far after the end: no silent gap
    assert w.generation.start_tick() == 4 * BAR
    w.seek(2 * BAR)  # inside the piece: from the playhead
    assert w.generation.start_tick() == 2 * BAR
    w.generation.update_placement_note()
    assert "bars 3–6" in w.continue_panel.placement_note.text()
    assert "move" in w.continue_panel.placement_note.text()


def test_insert_shows_later_notes_moved_and_accept_moves_them(make_window, tmp_path):
    w = make_window()
    piece = demo_score(bars=8)
    w.doc.load_score(piece)
    w.continue_panel.placement.setCurrentIndex(w.continue_panel.placement.findData(arrange.INSERT))
    start, bars = 2 * BAR, 2
    continuation = show_continuation(w, start, bars)
    region = (start, start + bars * BAR)
    later = [i for i, n in w.doc.items() if n.start >= start]
    assert later
    for i in w.doc.ids():  # nothing of the piece is drawn under the continuation's bars
        r = shown_rect(w, i)
        n = w.doc.note(i)
        if n.start >= start:
            assert r.left() == n.start + bars * BAR
        assert not (n.start >= start and r.left() < region[1])
    assert w.roll.scene.region_item.isVisible() and w.roll.scene.region_item.rect().left() == start
    preview_rects = [i.rect() for i in w.roll.scene.preview_items if i.data(0) == PREVIEW_ID]
    assert len(preview_rects) == len(continuation)

    exported = tmp_path / "export.mid"
    assert w.export_to(str(exported))
    w.continue_panel.accept_button.setEnabled(True)
    w.continue_panel.accept_button.click()
    assert w.doc.preview.is_empty() and len(w.doc) == len(piece.notes) + len(continuation)
    expected = sorted((n.start + (bars * BAR if n.start >= start else 0), n.pitch) for n in piece.notes)
    expected = sorted(expected + [(n.start, n.pitch) for n in continuation])
    assert sorted((n.start, n.pitch) for n in w.doc.notes()) == expected
    saved, _ = read_midi(exported)  # what was exported with the preview is what Accept made
    assert sorted((n.start, n.pitch) for n in saved.notes) == expected
    assert all(shown_rect(w, i).left() == w.doc.note(i).start for i in w.doc.ids())  # drawn where they are
    w.undo()  # one step
    assert sorted((n.start, n.pitch) for n in w.doc.notes()) == sorted((n.start, n.pitch) for n in piece.notes)
    assert len(w.doc.preview.notes) == len(continuation)


def test_replace_dims_the_notes_in_its_bars_and_accept_drops_them(make_window):
    w = make_window()
    piece = demo_score(bars=8)
    w.doc.load_score(piece)
    w.continue_panel.placement.setCurrentIndex(w.continue_panel.placement.findData(arrange.REPLACE))
    assert w.doc.placement == arrange.REPLACE
    start, bars = 2 * BAR, 2
    continuation = show_continuation(w, start, bars)
    inside = {i for i, n in w.doc.items() if start <= n.start < start + bars * BAR}
    for i in w.doc.ids():
        item = w.roll.scene.items_by_id[i]
        assert item.opacity() == (grid.REPLACED_OPACITY if i in inside else 1.0)
        assert shown_rect(w, i).left() == w.doc.note(i).start
    w.generation.update_placement_note()
    assert f"replaces the {len(inside)} notes" in w.continue_panel.placement_note.text()
    w.generation.accept()
    assert len(w.doc) == len(piece.notes) - len(inside) + len(continuation)
    assert not any(start <= n.start < start + bars * BAR and n.pitch != 96 for n in w.doc.notes())
    assert all(w.roll.scene.items_by_id[i].opacity() == 1.0 for i in w.doc.ids())


def test_insert_moves_meter_changes_with_the_music(make_window):
    from core.score import Score, TimeSignature
    w = make_window()
    piece = demo_score(bars=4)
    w.doc.load_score(Score(piece.notes, piece.tempos, [TimeSignature(0, 4, 4), TimeSignature(2 * BAR, 3, 4)]))
    show_continuation(w, BAR, 1)
    w.generation.accept()
    assert [(t.tick, t.numerator) for t in w.doc.meta.time_signatures] == [(0, 4), (3 * BAR, 3)]
    w.undo()
    assert [(t.tick, t.numerator) for t in w.doc.meta.time_signatures] == [(0, 4), (2 * BAR, 3)]


# --- documents, drops, modified mark, messages -------------------------------------------------------
def test_opening_another_file_clears_the_selection(make_window, tmp_path):
    w = make_window()
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    write_demo(a, bars=2)
    write_demo(b, bars=3, seed=5)
    w.open_file(str(a))
    w.roll.select_all()
    assert w.roll.selected_ids()
    w.open_file(str(b))
    assert w.roll.selected_ids() == []
    before = len(w.doc)
    w.delete()  # the next edit must not hit the new file's notes
    assert len(w.doc) == before
    w.roll.select_all()
    w.new_document()
    assert w.roll.selected_ids() == []


def test_a_midi_file_dropped_on_the_roll_opens(make_window, tmp_path):
    w = make_window()
    dropped = tmp_path / "dropped.mid"
    write_midi(demo_score(bars=3, seed=7), dropped)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    viewport = w.roll.view.viewport()
    enter = QDragEnterEvent(QPoint(100, 100), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewport, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(100, 100), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(viewport, drop)
    assert w.doc.path == str(dropped) and len(w.doc) == len(demo_score(bars=3, seed=7).notes)


def test_showing_and_rejecting_a_continuation_does_not_mark_the_piece_modified(make_window, tmp_path):
    w = make_window()
    src = tmp_path / "piece.mid"
    write_demo(src, bars=4)
    w.open_file(str(src))
    assert not w.doc.is_modified() and "•" not in w.windowTitle()
    show_continuation(w, 4 * BAR, 2)
    w.generation.reject()
    assert w.doc.preview.is_empty()
    assert not w.doc.is_modified() and "•" not in w.windowTitle()
    w.undo()  # the preview again: still the file as it was
    assert not w.doc.is_modified()
    w.generation.accept()
    assert w.doc.is_modified() and "•" in w.windowTitle()
    w.undo()
    assert not w.doc.is_modified() and "•" not in w.windowTitle()


def test_old_messages_go_after_new_and_reject(make_window, tmp_path):
    w = make_window()
    w.show_message("Could not open broken.mid: not a MIDI file", "error")
    assert w.messages.text
    w.new_document()
    assert w.messages.text == "" and w.statusBar().currentMessage() == ""
    show_continuation(w, 0, 1)
    w.continue_panel.status.setText("16 notes in 0.4 s (1 variation). Accept, reject, regenerate or pick "
                                    "another variation.")
    w.continue_panel.reject_button.setEnabled(True)
    w.continue_panel.reject_button.click()
    assert "Accept, reject" not in w.continue_panel.status.text()


# --- zoom and size --------------------------------------------------------------------------------------
def test_zoom_to_fit_shows_the_continuation_and_every_pitch(make_window):
    w = make_window()
    w.resize(1200, 760)
    notes = [Note(k * 480, 480, 30 + (k * 7) % 71) for k in range(32)]  # pitches 30..100
    from core.score import Score
    w.doc.load_score(Score(notes))
    show_continuation(w, 8 * BAR, 4, pitch=102)
    w.roll.zoom_to_fit()
    view = w.roll.view
    first, last = view.visible_ticks()
    assert first <= 0 and last >= 12 * BAR  # the piece and the continuation after it
    top = view.mapToScene(QPoint(0, 0)).y()
    bottom = view.mapToScene(QPoint(0, view.viewport().height())).y()
    assert top <= grid.row_of(102) and bottom >= grid.row_of(30) + 1  # every pitch in view


def test_vertical_zoom_with_ctrl_shift_wheel_and_the_slider(make_window):
    w = make_window()
    view = w.roll.view
    view.set_zoom(px_per_tick=0.1, px_per_row=14)
    pos = QPointF(200, 150)

    def wheel(delta, modifiers):
        event = QWheelEvent(pos, view.viewport().mapToGlobal(pos), QPoint(), QPoint(0, delta), Qt.NoButton,
                            modifiers, Qt.NoScrollPhase, False)
        QApplication.sendEvent(view.viewport(), event)

    wheel(120, Qt.ControlModifier | Qt.ShiftModifier)
    assert view.px_per_row > 14 and view.px_per_tick == 0.1
    assert w.roll.row_zoom.value() == int(round(view.px_per_row * 10))  # the slider follows
    w.roll.row_zoom.setValue(80)
    assert view.px_per_row == 8.0


def test_the_window_fits_a_768_pixel_laptop_screen(make_window):
    w = make_window()
    assert w.minimumSizeHint().height() <= 600 and w.minimumSize().height() <= 600
    w.resize(1024, 600)
    QApplication.processEvents()
    assert w.height() <= 600


def test_finetune_panel_idle_says_not_started(make_window):
    w = make_window()
    assert "0 / 1" not in w.finetune_panel.progress.text()
    assert w.finetune_panel.progress.text() == "not started"


# --- fine-tune base model, remembered settings ----------------------------------------------------------
def test_finetune_shows_and_uses_the_chosen_base(make_window, app_paths, qtbot, tmp_path):
    make_tiny_checkpoint(app_paths.resources / "alpha.pth", seed=0)
    make_tiny_checkpoint(app_paths.resources / "beta.pth", seed=1)
    style_run = library.new_run(app_paths.user_data, "my style", "state", app_paths.resources / "beta.pth")
    (style_run / library.STYLE_FILE).write_bytes(b"picked, never loaded here")
    library.update_run(style_run, finished=True)
    w = make_window()
    w.refresh_models()
    panel = w.finetune_panel
    bases = [panel.base.itemData(i) for i in range(panel.base.count())]
    assert bases == [str(app_paths.resources / "alpha.pth"), str(app_paths.resources / "beta.pth")]  # no style
    assert panel.base.currentData() == w.base_checkpoint() == str(app_paths.resources / "alpha.pth")
    w.model_box.setCurrentIndex(w.model_box.findData(str(style_run / library.STYLE_FILE)))
    w._on_model_chosen(w.model_box.currentIndex())
    # the toolbar's picker does not choose what a fine-tune trains on (issue 29): the bundled base stays
    assert panel.base.currentData() == str(app_paths.resources / "alpha.pth")
    panel.base.setCurrentIndex(1)  # the user picks beta
    assert "beta" in panel.base_note.text()
    corpus = tmp_path / "music"
    corpus.mkdir()
    for f in sorted((CORPUS / "bach").glob("*.mid"))[:2]:
        shutil.copy(f, corpus / f.name)
    panel.folder.setText(str(corpus))
    panel.mode.setCurrentIndex(panel.mode.findData("state"))
    panel.length_unit.setCurrentIndex(panel.length_unit.findData("steps"))
    panel.steps.setValue(100_000)
    w.training.extra_config = {"ctx_len": 64, "batch_size": 2, "eval_every": 1000, "threads": 1, "workers": 1}
    with qtbot.waitSignal(w.training.finished, timeout=120000):
        panel.start_button.click()
        info = library.run_info(w.training.run_dir)
        assert info["base"] == info["config"]["base"] == str(app_paths.resources / "beta.pth")
        w.training.cancel()


def test_continue_settings_and_finetune_folder_are_remembered(make_window, tmp_path, app_paths, qtbot):
    from musicapp.main_window import MainWindow
    settings = tmp_path / "remembered.ini"
    w = MainWindow(app_paths, Preferences(QSettings(str(settings), QSettings.IniFormat)), confirm_discard=False)
    qtbot.addWidget(w)
    p = w.continue_panel
    p.bars.setValue(7)
    p.temperature.setValue(0.7)
    p.top_p.setValue(0.8)
    p.variations.setValue(3)
    p.seed.setValue(42)
    p.from_selection.setChecked(True)
    p.placement.setCurrentIndex(p.placement.findData(arrange.REPLACE))
    w.finetune_panel.folder.setText(str(tmp_path))
    w.finetune_panel.folderChosen.emit(str(tmp_path))
    w.shutdown()
    again = MainWindow(app_paths, Preferences(QSettings(str(settings), QSettings.IniFormat)), confirm_discard=False)
    qtbot.addWidget(again)
    q = again.continue_panel
    assert (q.bars.value(), q.temperature.value(), q.top_p.value(), q.variations.value(), q.seed.value()) == \
        (7, 0.7, 0.8, 3, 42)
    assert q.from_selection.isChecked() and q.placement_mode() == arrange.REPLACE
    assert again.doc.placement == arrange.REPLACE
    assert again.finetune_panel.folder.text() == str(tmp_path)
    again.shutdown()


@pytest.mark.slow
def test_loss_curve_goes_on_from_the_runs_log_on_resume(make_window, app_paths, qtbot, tmp_path):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    w.training.extra_config = {"ctx_len": 64, "batch_size": 2, "eval_every": 2, "max_eval_batches": 1,
                               "threads": 1, "workers": 1, "checkpoint_every": 1000}
    corpus = tmp_path / "music"
    corpus.mkdir()
    for f in sorted((CORPUS / "bach").glob("*.mid"))[:3]:
        shutil.copy(f, corpus / f.name)
    panel = w.finetune_panel
    panel.folder.setText(str(corpus))
    panel.mode.setCurrentIndex(panel.mode.findData("state"))
    panel.steps.setValue(100_000)
    panel.start_button.click()
    qtbot.waitUntil(lambda: len(panel.curve.train_points) >= 3 and bool(panel.curve.val_points), timeout=120000)
    with qtbot.waitSignal(w.training.finished, timeout=60000):
        panel.cancel_button.click()
    qtbot.waitUntil(lambda: not w.training.running, timeout=10000)
    run_dir = w.training.run_dir
    before_train, before_val = list(panel.curve.train_points), list(panel.curve.val_points)
    assert library.loss_history(run_dir) == (before_train, before_val)  # the log holds what the curve showed
    stopped_at = w.training.last_event.step

    panel.resume_button.click()
    assert panel.curve.train_points == before_train and panel.curve.val_points == before_val
    qtbot.waitUntil(lambda: panel.curve.train_points[-1][0] > stopped_at + 1, timeout=120000)
    with qtbot.waitSignal(w.training.finished, timeout=60000):
        panel.cancel_button.click()
    steps = [s for s, _ in panel.curve.train_points]
    assert steps[:len(before_train)] == [s for s, _ in before_train]
    assert steps == sorted(set(steps))  # one point per step: a redone step replaces its old point


def make_v1_checkpoint(path: Path) -> Path:
    """A small real RWKV-7 on the first vocabulary, as the bundled base model is."""
    import torch

    from core.network.checkpoint import save_checkpoint
    from core.network.model import ModelConfig, RWKV7
    from core.tokenizer import Tokenizer
    tok = Tokenizer("rwkvmusic-tok-1")
    torch.manual_seed(0)
    save_checkpoint(RWKV7(ModelConfig(n_layer=2, n_embd=64, vocab_size=tok.vocab_size)), str(path),
                    {"tokenizer": tok.to_dict()})
    return path


def test_continue_with_the_model_never_draws_over_the_piece(make_window, app_paths, qtbot):
    make_v1_checkpoint(app_paths.resources / "tiny-v1.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    piece = demo_score(bars=4)
    w.doc.load_score(piece)
    panel = w.continue_panel
    panel.bars.setValue(1)
    panel.variations.setValue(1)
    panel.seed.setValue(3)
    panel.placement.setCurrentIndex(panel.placement.findData(arrange.INSERT))

    w.seek(0)  # as after opening a file: the continuation goes after the piece
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda busy: not busy):
        panel.continue_button.click()
    assert w.doc.preview_region() == (4 * BAR, 5 * BAR)
    assert w.doc.preview.notes and all(4 * BAR <= n.start < 5 * BAR for n in w.doc.preview.notes)
    w.generation.reject()

    w.seek(2 * BAR + 100)  # inside bar 3: bar 3 is heard whole, one bar is inserted after it
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda busy: not busy):
        panel.continue_button.click()
    start, end = w.doc.preview_region()
    assert (start, end) == (3 * BAR, 4 * BAR)
    continuation = list(w.doc.preview.notes)
    assert continuation and all(start <= n.start < end for n in continuation)
    for i in w.doc.ids():  # every note of the piece is drawn outside the continuation's bar
        r = shown_rect(w, i)
        assert r.right() <= start or r.left() >= end
    w.generation.accept()
    moved = sorted((n.start + (BAR if n.start >= start else 0), n.pitch) for n in piece.notes)
    assert sorted((n.start, n.pitch) for n in w.doc.notes()) == sorted(moved + [(n.start, n.pitch)
                                                                                for n in continuation])

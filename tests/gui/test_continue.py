"""Continue with the real RWKV-7 model: notes stream into the roll in their own colour while they play,
then accept / reject / regenerate / pick a variation, all undoable; the GUI never stalls meanwhile."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from musicapp.pianoroll.scene import PREVIEW_ID
from tests.gui.helpers import demo_score
from tests.gui.models import GapMeter, make_tiny_checkpoint


@pytest.fixture
def ready_window(make_window, app_paths, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    w.doc.load_score(demo_score(bars=4))
    return w


def preview_items(w):
    return [i for i in w.roll.scene.preview_items if i.data(0) == PREVIEW_ID]


def test_model_picker_shows_model_and_device(ready_window):
    w = ready_window
    assert w.model_box.currentText() == "tiny-base (base model)"
    assert "tiny-base" in w.device_label.text() and ("CPU" in w.device_label.text() or "CUDA" in w.device_label.text())
    assert w.continue_panel.continue_button.isEnabled()


def test_continue_streams_notes_then_accept_reject_undo(ready_window, qtbot):
    w = ready_window
    panel = w.continue_panel
    panel.bars.setValue(2)
    panel.variations.setValue(2)
    panel.seed.setValue(1234)
    w.seek(4 * 1920)  # continue after the 4 bars
    streamed = []
    w.doc.previewNoteAdded.connect(lambda v, n: streamed.append((v, n)))
    gaps = GapMeter()
    gaps.start()
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda busy: not busy):
        panel.continue_button.click()
        assert w.generation.generating
        assert not panel.continue_button.isEnabled() and panel.stop_button.isEnabled()
    gaps.stop()
    assert streamed, "the model produced no notes"
    assert {v for v, _ in streamed} <= {0, 1}
    preview = w.doc.preview
    assert preview.start_tick == 4 * 1920
    shown = preview.notes
    assert shown and all(4 * 1920 <= n.start < 6 * 1920 for n in shown)
    assert len(preview_items(w)) == len(shown)  # drawn in the roll, in the continuation colour
    assert len(w.doc) == len(demo_score(bars=4).notes)  # not part of the piece until accepted
    assert gaps.max_stall < 0.05, f"while generating: {gaps.report()}"

    # pick the other variation (undoable), then accept, undo, reject
    if 1 in preview.variations and preview.variations[1]:
        w.generation.pick(1)
        assert w.doc.preview.current == 1
        w.undo()
        assert w.doc.preview.current == 0
    before = len(w.doc)
    panel.accept_button.click()
    assert len(w.doc) == before + len(shown) and w.doc.preview.is_empty() and not preview_items(w)
    w.undo()
    assert len(w.doc) == before and len(w.doc.preview.notes) == len(shown)
    panel.reject_button.click()
    assert w.doc.preview.is_empty()
    w.undo()
    assert len(w.doc.preview.notes) == len(shown)
    w.undo()  # the continuation itself is one undo step
    assert w.doc.preview.is_empty()


def test_regenerate_with_same_seed_repeats_and_instruments_are_respected(ready_window, qtbot):
    w = ready_window
    panel = w.continue_panel
    panel.bars.setValue(1)
    panel.variations.setValue(1)
    panel.seed.setValue(7)
    panel.allow_instrument(40)  # Violin only
    for i in range(panel.instruments.count()):
        item = panel.instruments.item(i)
        if item.data(Qt.UserRole) != (40, False):
            item.setCheckState(Qt.Unchecked)
    assert panel.allowed_instruments() == [(40, False)]
    w.seek(4 * 1920)
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda b: not b):
        panel.continue_button.click()
    first = [(n.start, n.pitch, n.duration) for n in w.doc.preview.notes]
    assert all(n.program == 40 and not n.drum for n in w.doc.preview.notes)
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda b: not b):
        panel.regenerate_button.click()
    assert [(n.start, n.pitch, n.duration) for n in w.doc.preview.notes] == first
    w.undo()  # back to the first result, then to nothing
    assert [(n.start, n.pitch, n.duration) for n in w.doc.preview.notes] == first


def test_stop_cancels_a_long_continuation(ready_window, qtbot):
    w = ready_window
    panel = w.continue_panel
    panel.bars.setValue(64)
    w.seek(4 * 1920)
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda b: not b):
        panel.continue_button.click()
        qtbot.waitUntil(lambda: len(w.doc.preview.notes) >= 3, timeout=60000)
        panel.stop_button.click()
    assert not w.transport.playing
    assert w.doc.preview.notes and max(n.start for n in w.doc.preview.notes) < 4 * 1920 + 64 * 1920


def test_keep_to_the_pieces_grid_is_a_remembered_continue_setting(ready_window, make_window, qtbot):
    """The piece is in eighths: with the setting on (the default) every new onset is on an eighth, even from
    the untrained tiny model with the memory off (the memory alone would replay the piece's eighths)."""
    from musicapp import engine
    w = ready_window
    panel = w.continue_panel
    assert panel.grid.isChecked() and engine._sampling(panel.params()).grid
    panel.bars.setValue(2)
    panel.variations.setValue(2)
    panel.seed.setValue(3)
    w.memory.setValue(0)
    w.seek(4 * 1920)
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda busy: not busy):
        panel.continue_button.click()
    notes = [n for v in w.doc.preview.variations.values() for n in v]
    assert notes and all(n.start % 240 == 0 for n in notes)
    panel.grid.setChecked(False)
    assert not engine._sampling(panel.params()).grid
    assert not make_window().continue_panel.grid.isChecked()  # remembered

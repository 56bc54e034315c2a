"""Nothing of one piece stays when another is opened: the ruler region and Loop, the position readout, the
Continue panel's variations and Accept."""
from __future__ import annotations

from core.score import Note
from musicapp import commands
from musicapp.document import Preview
from tests.gui.helpers import demo_score, write_demo


def test_opening_another_piece_leaves_nothing_of_the_last(make_window, tmp_path, qtbot):
    w = make_window()
    w.doc.load_score(demo_score(bars=8))
    w.roll._on_loop_dragged(2 * 1920, 4 * 1920)  # a ruler drag: region and Loop on
    assert w.act_loop.isChecked() and w.transport.loop
    w.seek(5 * 1920 + 480)
    assert w.position_label.text().startswith("bar 6.2")
    # a continuation with two variations is shown, the second picked
    shown = Preview({0: [Note(8 * 1920, 480, 60)], 1: [Note(8 * 1920, 480, 64)]}, 1, 8 * 1920, 9 * 1920)
    w.doc.undo_stack.push(commands.SetPreview(w.doc, Preview(), shown, "Continue"))
    panel = w.continue_panel
    assert panel.variation_box.currentText() == "2 of 2" and panel.accept_button.isEnabled()

    path = tmp_path / "other.mid"
    write_demo(path, bars=2, seed=5)
    assert w.open_file(str(path))
    assert w.roll.loop == (0, 0) and not w.roll.loop_enabled and not w.act_loop.isChecked()
    assert w.transport.loop is None
    assert w.position_label.text().startswith("bar 1.1")
    assert panel.variation_box.count() == 0 and not panel.accept_button.isEnabled()
    assert not panel.reject_button.isEnabled() and not panel.regenerate_button.isEnabled()


def test_a_continuation_streaming_when_another_piece_opens_stays_with_the_old_one(make_window, app_paths, tmp_path,
                                                                                  qtbot):
    from tests.gui.models import make_tiny_checkpoint
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    w.doc.load_score(demo_score(bars=4))
    w.continue_panel.bars.setValue(32)  # long enough to be streaming still
    w.seek(4 * 1920)
    w.generation.start()
    qtbot.waitUntil(lambda: len(w.doc.preview.notes) >= 1, timeout=60000)
    path = tmp_path / "other.mid"
    write_demo(path, bars=2, seed=5)
    assert w.open_file(str(path))
    qtbot.waitUntil(lambda: not w.generation.generating, timeout=60000)
    qtbot.wait(100)  # anything still queued from the old stream arrives now
    assert w.doc.preview.is_empty() and not w.doc.undo_stack.canUndo()
    assert w.continue_panel.variation_box.count() == 0 and not w.continue_panel.accept_button.isEnabled()

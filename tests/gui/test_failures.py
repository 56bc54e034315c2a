"""Failures are said clearly in the window and break nothing: a missing MIDI port, a broken model file,
a fine-tune with nothing to learn from."""
from __future__ import annotations


def test_missing_output_port_is_reported_and_playback_stays_silent(make_window, prefs, qtbot):
    from tests.gui.helpers import output_settled
    w = output_settled(qtbot, make_window(start=True))
    from core import live
    if live.choose_midi_api()[1]:  # no MIDI system runs here: what to start is said, once
        assert w.messages.text == live.NO_MIDI_SYSTEM
    w._open_output("No Such Synth:port 0")  # a port that is not there, on whatever system runs
    assert "No MIDI output" in w.messages.text
    w.doc.load_score(__import__("tests.gui.helpers", fromlist=["x"]).demo_score(bars=1, bpm=600))
    w.toggle_play()  # plays silently: the playhead still runs, then stops at the end
    qtbot.waitUntil(lambda: not w.transport.playing, timeout=5000)
    assert w.roll.playhead_tick > 0


def test_broken_model_file_is_reported(make_window, app_paths, qtbot):
    (app_paths.resources / "broken.pth").write_bytes(b"not a checkpoint at all")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: "Could not load the model" in w.messages.text, timeout=120000)
    assert w.generation.generator is None
    assert not w.continue_panel.continue_button.isEnabled()


def test_finetune_with_no_usable_file_reports_the_error(make_window, app_paths, tmp_path, qtbot):
    from tests.gui.models import make_tiny_checkpoint
    make_tiny_checkpoint(app_paths.resources / "tiny.pth")
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.mid").write_bytes(b"junk")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    w.training.extra_config = {"ctx_len": 64, "batch_size": 2, "threads": 1, "workers": 1}
    w.finetune_panel.folder.setText(str(folder))
    with qtbot.waitSignal(w.training.finished, timeout=120000) as result:
        w.finetune_panel.start_button.click()
    assert result.args[0] == "error"
    assert "Fine-tuning failed" in w.messages.text
    qtbot.waitUntil(lambda: w.finetune_panel.start_button.isEnabled(), timeout=10000)
    assert [m.kind for m in w.models] == ["base"]  # nothing half-made in the picker

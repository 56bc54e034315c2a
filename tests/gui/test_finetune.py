"""Fine-tuning from the window: a real core.training.train job in a child process on a small real corpus,
its scan report, progress, loss curve, the result in the model picker; cancel and resume; the GUI
event loop never stalls meanwhile."""
from __future__ import annotations

import json

import pytest

from core import library
from tests.folders import chorale_folder
from tests.gui.models import TINY_TRAINING, GapMeter, make_tiny_checkpoint


def set_run(panel, folder, name: str, steps: int, mode: str | None = None) -> None:
    """Fill the Fine-tune panel for a run of `steps` steps on `folder` (in `mode`, else the panel's default)."""
    panel.folder.setText(str(folder))
    if mode is not None:
        panel.mode.setCurrentIndex(panel.mode.findData(mode))
    panel.length_unit.setCurrentIndex(panel.length_unit.findData("steps"))
    panel.steps.setValue(steps)
    panel.name.setText(name)


@pytest.fixture
def corpus(tmp_path):
    return chorale_folder(tmp_path, "my music", 3, not_midi=True)


@pytest.fixture
def trained_window(make_window, app_paths, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    w.training.extra_config = dict(TINY_TRAINING)
    # importing torch (on the loader's thread) holds the GIL for a while, once, at start-up: wait for it
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    return w


def test_scan_report_lists_used_and_skipped(trained_window, corpus, qtbot):
    w = trained_window
    w.finetune_panel.folder.setText(str(corpus))
    with qtbot.waitSignal(w.finetune_panel.report.model().rowsInserted, timeout=60000):
        w.training.scan(str(corpus))
    qtbot.waitUntil(lambda: "skipped" in w.finetune_panel.report_summary.text(), timeout=30000)
    assert "3 files used" in w.finetune_panel.report_summary.text()
    skipped = w.finetune_panel.report.topLevelItem(1)
    assert skipped.childCount() == 1 and skipped.child(0).text(0) == "not really.mid"
    assert skipped.child(0).text(1)  # with its reason


@pytest.mark.slow
def test_finetune_finishes_and_registers_its_model(trained_window, corpus, qtbot, app_paths):
    w = trained_window
    assert w.current_model().name == "tiny-base"
    panel = w.finetune_panel
    set_run(panel, corpus, "Bach chorales", 4, mode="full")
    gaps = GapMeter()
    gaps.start()
    with qtbot.waitSignal(w.training.finished, timeout=180000) as result:
        panel.start_button.click()
        assert not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    gaps.stop()
    assert result.args[0] == "done", w.messages.text
    assert panel.progress.value() == panel.progress.maximum() == 4
    assert panel.curve.train_points and panel.curve.val_points
    labels = [w.model_box.itemText(i) for i in range(w.model_box.count())]
    assert "Bach chorales (fine-tuned)" in labels
    entry = next(m for m in w.models if m.name == "Bach chorales")
    assert entry.path.is_file() and entry.info["finished"] is True
    assert "model picker" in w.messages.text
    assert gaps.max_stall < 0.05, f"while fine-tuning: {gaps.report()}"


@pytest.mark.slow
def test_cancel_then_resume(trained_window, corpus, qtbot, app_paths):
    w = trained_window
    panel = w.finetune_panel
    set_run(panel, corpus, "long run", 100_000, mode="state")
    panel.start_button.click()
    qtbot.waitUntil(lambda: w.training.last_event is not None and w.training.last_event.kind == "step"
                    and w.training.last_event.step >= 1, timeout=120000)
    with qtbot.waitSignal(w.training.finished, timeout=60000) as result:
        panel.cancel_button.click()
    assert result.args[0] == "cancelled"
    qtbot.waitUntil(lambda: not w.training.running, timeout=10000)
    stopped_at = w.training.last_event.step
    runs = library.resumable_runs(app_paths.user_data)
    assert [r.name for r in runs] == ["long-run"]
    assert panel.resume_box.count() == 1 and panel.resume_button.isEnabled()

    panel.resume_button.click()
    qtbot.waitUntil(lambda: w.training.last_event is not None and w.training.last_event.kind == "step"
                    and w.training.last_event.step > stopped_at + 1, timeout=120000)
    with qtbot.waitSignal(w.training.finished, timeout=60000):
        panel.cancel_button.click()
    # the run's log has every event of both jobs: the resumed one goes on at the step after the checkpoint
    # (a restart from step 0 would log steps 1, 2, ... again)
    events = [json.loads(line) for line in (runs[0] / library.LOG_FILE).read_text().splitlines()]
    first_end = next(i for i, e in enumerate(events) if e["kind"] == "cancelled")
    assert events[first_end]["step"] == stopped_at
    resumed = [e["step"] for e in events[first_end + 1:] if e["kind"] == "step" and e.get("loss") is not None]
    assert len(resumed) >= 2 and resumed == list(range(stopped_at + 1, stopped_at + 1 + len(resumed))), resumed


@pytest.mark.slow
def test_closing_the_window_mid_training_stops_the_job_resumably(trained_window, corpus, qtbot, app_paths):
    w = trained_window
    panel = w.finetune_panel
    set_run(panel, corpus, "interrupted", 100_000)
    panel.start_button.click()
    qtbot.waitUntil(lambda: w.training.last_event is not None and w.training.last_event.kind == "step"
                    and w.training.last_event.step >= 1, timeout=120000)
    thread = w.training._train_thread
    w.close()  # cancel, quit, wait: the child checkpoints and exits
    assert not thread.isRunning()
    assert [r.name for r in library.resumable_runs(app_paths.user_data)] == ["interrupted"]


def test_a_style_run_offers_the_folders_memory_first(trained_window, corpus, qtbot, app_paths):
    """Fine-tune in style mode: the folder's memory is in the model picker seconds after the start, while the
    style trains; cancelling keeps it."""
    w = trained_window
    panel = w.finetune_panel
    panel.folder.setText(str(corpus))
    panel.mode.setCurrentIndex(panel.mode.findData("style"))
    panel.steps.setValue(200)
    panel.name.setText("Bach memory")
    panel.start_button.click()
    qtbot.waitUntil(lambda: any(m.name == "Bach memory" for m in w.models), timeout=120000)
    assert "memory: learnt 3 pieces" in w.messages.text and "model picker" in w.messages.text
    entry = next(m for m in w.models if m.name == "Bach memory")
    from core.network.style import load_style
    assert load_style(str(entry.path)).memory.pieces == 3
    with qtbot.waitSignal(w.training.finished, timeout=120000):
        panel.cancel_button.click()
    assert load_style(str(entry.path)).has_memory

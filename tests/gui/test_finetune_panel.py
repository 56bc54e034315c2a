"""The Fine-tune panel as a musician meets it: a length in minutes (10 by default) with its ETA, the bundled
base model unless they choose another (and said), a question before a name in use gets a number, "training"
(not "paused") for the run going on, and a wheel over the loss plot that scrolls the panel."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from core import library
from core.training.train_config import TrainEvent
from tests.folders import chorale_folder
from tests.gui.models import TINY_TRAINING, make_tiny_checkpoint


@pytest.fixture
def corpus(tmp_path):
    return chorale_folder(tmp_path, "chorales", 2)


def test_length_is_ten_minutes_by_default_with_an_eta(make_window):
    w = make_window()
    panel = w.finetune_panel
    s = panel.settings()
    assert s["time_budget_s"] == 600 and s["steps"] is None
    assert panel.length_note.text().startswith("Ends about")
    panel.begin_run(600)
    # the first steps: the trainer has not fitted its length to the time yet (a placeholder length)
    panel.show_progress(TrainEvent("step", step=2, total_steps=10**9, eta_s=5e7, loss=3.0))
    assert "/ 10:00" in panel.progress.format() and "1000000000" not in panel.stats.text()
    assert "ETA 9:5" in panel.stats.text() or "ETA 10:00" in panel.stats.text()
    panel.show_progress(TrainEvent("step", step=3, total_steps=120, eta_s=300.0, loss=2.9))  # fitted
    assert "step 3 / 120" in panel.stats.text() and "ETA 5:00" in panel.stats.text()
    panel.length_unit.setCurrentIndex(panel.length_unit.findData("steps"))
    assert panel.settings()["steps"] == 300 and panel.settings()["time_budget_s"] is None


def test_the_bundled_base_model_is_the_default_whatever_the_picker_says(make_window, app_paths, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    tuned = app_paths.user_data / "models"
    tuned.mkdir(parents=True)
    make_tiny_checkpoint(tuned / "my-lora.pth", seed=1)
    w = make_window(start=True)
    panel = w.finetune_panel
    assert Path(panel.settings()["base"]).name == "tiny-base.pth"
    assert "tiny-base (base model)" in panel.base_note.text()
    # the user plays with their LoRA model: the next fine-tune still starts from the bundled base
    index = w.model_box.findData(str(tuned / "my-lora.pth"))
    w.model_box.setCurrentIndex(index)
    w._on_model_chosen(index)
    w.refresh_models()
    assert Path(panel.settings()["base"]).name == "tiny-base.pth"
    # choosing it in the panel is what makes it the base, and the note says so
    panel.base.setCurrentIndex(panel.base.findData(str(tuned / "my-lora.pth")))
    w.refresh_models()
    assert Path(panel.settings()["base"]).name == "my-lora.pth" and "my-lora" in panel.base_note.text()


def test_a_name_in_use_is_asked_about(make_window, app_paths, corpus, monkeypatch, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window()
    w.refresh_models()
    library.new_run(app_paths.user_data, "Chorales", "style", None)
    panel = w.finetune_panel
    panel.folder.setText(str(corpus))
    panel.name.setText("Chorales")
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (asked.append(a[2]), QMessageBox.No)[1])
    panel.start_button.click()
    assert asked and "“Chorales” exists" in asked[0] and "“Chorales 2”" in asked[0]
    assert not w.training.running and len(list((app_paths.user_data / "runs").iterdir())) == 1


@pytest.mark.slow
def test_a_resumed_run_says_training_not_paused(make_window, app_paths, corpus, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    w.training.extra_config = dict(TINY_TRAINING)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    panel = w.finetune_panel
    panel.folder.setText(str(corpus))
    panel.mode.setCurrentIndex(panel.mode.findData("state"))
    panel.name.setText("long run")
    shown = []  # what the panel showed after each event (the steps are fitted to the time at step 3)
    show = panel.show_progress

    def show_and_record(event):  # on the GUI thread, as the controller calls it
        show(event)
        shown.append((event.step, panel.progress.format(), panel.stats.text()))
    panel.show_progress = show_and_record
    panel.start_button.click()
    assert library.run_info(w.training.run_dir)["config"]["time_budget_s"] == 600  # the default length
    qtbot.waitUntil(lambda: w.training.last_event is not None and w.training.last_event.kind == "step"
                    and w.training.last_event.step >= 1, timeout=120000)
    early = [(fmt, stats) for step, fmt, stats in shown if 1 <= step < 3]
    assert early and all("/ 10:00" in fmt and "ETA" in stats for fmt, stats in early), shown
    with qtbot.waitSignal(w.training.finished, timeout=60000):
        panel.cancel_button.click()
    qtbot.waitUntil(lambda: not w.training.running, timeout=10000)
    labels = lambda: [w.model_box.itemText(i).strip(" ↳") for i in range(w.model_box.count())]  # noqa: E731
    assert "long run (style, paused)" in labels()
    panel.resume_button.click()
    assert "long run (style, training)" in labels()
    with qtbot.waitSignal(w.training.finished, timeout=120000):
        panel.cancel_button.click()
    qtbot.waitUntil(lambda: not w.training.running, timeout=10000)
    assert "long run (style, paused)" in labels()


def test_the_wheel_over_the_loss_plot_scrolls_the_panel(make_window, qtbot):
    w = make_window()
    w.resize(1000, 420)  # a short window: the Fine-tune panel scrolls
    w.panels.setCurrentIndex(1)
    panel = w.finetune_panel
    panel.curve.ensure_plot()
    for step in range(1, 30):
        panel.curve.add(step, 4.0 - step * 0.05, None)
    qtbot.wait(50)
    area = w.panels.currentWidget()
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum() // 2)
    view = panel.curve.plot.plotItem.vb
    before_range, before = view.viewRange(), bar.value()
    target = panel.curve.plot.viewport()
    centre = QPointF(target.width() / 2, target.height() / 2)
    event = QWheelEvent(centre, QPointF(target.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, -120),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(target, event)
    assert bar.value() > before  # the panel scrolled
    assert view.viewRange() == before_range and all(view.autoRangeEnabled())  # the plot neither zoomed nor froze
    panel.curve.add(60, 0.5, None)  # and still follows the curve
    qtbot.waitUntil(lambda: view.viewRange()[0][1] >= 59)

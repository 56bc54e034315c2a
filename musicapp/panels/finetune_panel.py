"""The Fine-tune panel: a folder, its scan report, the base model, mode and length, start/cancel/resume,
progress, ETA, tokens/s and a live loss curve. It shows state and collects settings (the folder is
remembered between runs); the main window runs jobs."""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Signal
from PySide6.QtWidgets import (QAbstractScrollArea, QApplication, QComboBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton, QSpinBox,
                               QStackedWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

MODES = [("Style (a small file that steers the base model, up to 1 MB)", "style"),
         ("Opening style (learned initial state only)", "state"),
         ("LoRA (low-rank adapter, merged into a new model)", "lora"),
         ("Full fine-tune (every weight)", "full"),
         ("Memory only (the folder's notes, ready in seconds, no training)", "memory")]


DEFAULT_MINUTES = 10
UNFITTED_STEPS = 10**8  # a time-budget run reports a placeholder length until its first steps are timed


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _WheelToParent(QObject):
    """The wheel over the plot scrolls the panel (the user is scrolling past it) instead of zooming the plot,
    which would then stop following the curve: the event goes to the scroll bar of the scroll area around."""

    def __init__(self, plot) -> None:
        super().__init__(plot)
        self.plot = plot

    def eventFilter(self, obj, event) -> bool:
        if event.type() != QEvent.Wheel:
            return False
        area = self.plot.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.verticalScrollBar(), event)
        return True


class LossPlot(QWidget):
    """Training and validation loss against the step; pyqtgraph is imported on first use."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.plot = None
        self.train_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        self.setMinimumHeight(170)

    def ensure_plot(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg
        pg.setConfigOptions(antialias=True, background="#23252a", foreground="#c8cbd2")
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss (nats/token)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.addLegend(offset=(-10, 10))
        # a live curve that always shows the whole run: no zoom or pan to lose it by (wheel, drag, menu)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self._wheel = _WheelToParent(self.plot)
        self.plot.viewport().installEventFilter(self._wheel)
        self.train_curve = self.plot.plot([], [], pen=pg.mkPen("#5fb3ff", width=2), name="training")
        self.val_curve = self.plot.plot([], [], pen=pg.mkPen("#ffa640", width=2), symbol="o", symbolSize=6,
                                        symbolBrush="#ffa640", name="validation")
        self.layout_.addWidget(self.plot)

    def clear(self) -> None:
        self.set_history([], [])

    def set_history(self, train: list[tuple[int, float]], val: list[tuple[int, float]]) -> None:
        """Start from earlier points (a resumed run's log)."""
        self.train_points, self.val_points = list(train), list(val)
        if self.plot is not None or train or val:
            self.ensure_plot()
            self.train_curve.setData(*(zip(*self.train_points) if self.train_points else ([], [])))
            self.val_curve.setData(*(zip(*self.val_points) if self.val_points else ([], [])))

    def add(self, step: int, loss: float | None, val_loss: float | None) -> None:
        self.ensure_plot()
        for points, curve, value in ((self.train_points, self.train_curve, loss),
                                     (self.val_points, self.val_curve, val_loss)):
            if value is None:
                continue
            while points and points[-1][0] >= step:  # a resumed run redoes the steps after its checkpoint
                points.pop()
            points.append((step, value))
            curve.setData(*zip(*points))


class FinetunePanel(QWidget):
    folderChosen = Signal(str)
    startRequested = Signal()
    cancelRequested = Signal()
    resumeRequested = Signal(str)  # run folder

    def __init__(self, prefs=None, parent=None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        folder_row = self._build_folder_row()
        self._build_report()
        self._build_base_and_mode()
        length_row = self._build_length_row()
        self._budget_s: float | None = None  # of the running job, when it was given a time
        self._t0 = 0.0
        self.name = QLineEdit()
        self.name.setPlaceholderText("name of the new model")
        form = self._build_form(length_row)
        buttons, resume_row = self._build_buttons()
        self._build_progress()
        self._lay_out(folder_row, form, buttons, resume_row)
        self.set_running(False)
        self._say_length()
        self._say_base()
        self._restore_folder()
        self.folderChosen.connect(self.remember_folder)

    def _build_folder_row(self) -> QHBoxLayout:
        """The folder of MIDI files: typed (Enter reads it) or chosen."""
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("A folder of your MIDI files")
        self.folder.returnPressed.connect(lambda: self.folderChosen.emit(self.folder.text()))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        return folder_row

    def _build_report(self) -> None:
        """The folder's scan report: a summary and a tree of its files."""
        self.report_summary = QLabel("No folder chosen.")
        self.report_summary.setWordWrap(True)
        self.report = QTreeWidget()
        self.report.setHeaderLabels(["File", "Notes / reason"])
        self.report.setRootIsDecorated(True)
        self.report.setMaximumHeight(150)
        self.report.setColumnWidth(0, 170)

    def _build_base_and_mode(self) -> None:
        """The base model picker (with its note) and the mode."""
        self.base = QComboBox()
        self.base.setToolTip("The model the fine-tune starts from (a style belongs to this model). The bundled "
                             "base model unless you choose another here; the toolbar's picker does not change it.")
        self.base_note = QLabel("")
        self.base_note.setWordWrap(True)
        self.base.currentIndexChanged.connect(self._say_base)
        self.mode = QComboBox()
        for label, mode in MODES:
            self.mode.addItem(label, mode)

    def _build_length_row(self) -> QHBoxLayout:
        """The run's length: minutes or steps, as the unit beside them says; and the note under them."""
        # length: a time (the trainer fits its schedule to it, as `rwkv-music train --time-budget`) or steps
        self.length_unit = QComboBox()
        self.length_unit.addItem("Time", "time")
        self.length_unit.addItem("Steps", "steps")
        self.minutes = QSpinBox()
        self.minutes.setRange(1, 24 * 60)
        self.minutes.setValue(DEFAULT_MINUTES)
        self.minutes.setSuffix(" min")
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(300)
        self.steps.setSuffix(" steps")
        self.length_stack = QStackedWidget()
        self.length_stack.addWidget(self.minutes)
        self.length_stack.addWidget(self.steps)
        self.length_unit.currentIndexChanged.connect(self._on_length_unit)
        self.minutes.valueChanged.connect(self._say_length)
        length_row = QHBoxLayout()
        length_row.addWidget(self.length_stack, 1)
        length_row.addWidget(self.length_unit)
        self.length_note = QLabel("")
        return length_row

    def _build_form(self, length_row: QHBoxLayout) -> QFormLayout:
        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("", self.base_note)
        form.addRow("Mode", self.mode)
        form.addRow("Length", length_row)
        form.addRow("", self.length_note)
        form.addRow("Name", self.name)
        return form

    def _build_buttons(self) -> tuple[QHBoxLayout, QHBoxLayout]:
        """Start and cancel in a row; the run to resume and its button in another."""
        self.start_button = QPushButton("Start fine-tuning")
        self.cancel_button = QPushButton("Cancel")
        self.resume_box = QComboBox()
        self.resume_button = QPushButton("Resume")
        self.start_button.clicked.connect(self.startRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.resume_button.clicked.connect(self._on_resume)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        resume_row = QHBoxLayout()
        resume_row.addWidget(self.resume_box, 1)
        resume_row.addWidget(self.resume_button)
        return buttons, resume_row

    def _build_progress(self) -> None:
        """The progress bar, the statistics line and the loss curve."""
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not started")  # "%v / %m steps" once a run reports its length
        self.stats = QLabel("")
        self.stats.setWordWrap(True)
        self.curve = LossPlot()

    def _lay_out(self, folder_row: QHBoxLayout, form: QFormLayout, buttons: QHBoxLayout,
                 resume_row: QHBoxLayout) -> None:
        """The "Your music" group over the "Training" group."""
        data_box = QGroupBox("Your music")
        data_layout = QVBoxLayout(data_box)
        data_layout.addLayout(folder_row)
        data_layout.addWidget(self.report_summary)
        data_layout.addWidget(self.report)
        train_box = QGroupBox("Training")
        train_layout = QVBoxLayout(train_box)
        train_layout.addLayout(form)
        train_layout.addLayout(buttons)
        train_layout.addLayout(resume_row)
        train_layout.addWidget(self.progress)
        train_layout.addWidget(self.stats)
        train_layout.addWidget(self.curve, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(data_box)
        layout.addWidget(train_box, 1)

    def _restore_folder(self) -> None:
        """Show the folder used last time (not read again until the user asks)."""
        if self.prefs is not None and self.prefs.get("finetune/folder", ""):
            self.folder.setText(self.prefs.get("finetune/folder", ""))
            self.report_summary.setText("The folder you used last time; Choose… or Enter reads it again.")

    def remember_folder(self, folder: str) -> None:
        if self.prefs is not None and folder:
            self.prefs.set("finetune/folder", folder)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of MIDI files", self.folder.text())
        if folder:
            self.folder.setText(folder)
            self.folderChosen.emit(folder)

    def set_bases(self, models: list[tuple[str, str]], default: str | None) -> None:
        """(label, checkpoint path) of the models a fine-tune can start from. The user's choice stays while
        it is listed; else `default` (the bundled base model) is selected."""
        chosen = self.base.currentData()
        self.base.blockSignals(True)
        self.base.clear()
        for label, path in models:
            self.base.addItem(label, path)
        self.base.blockSignals(False)
        self.select_base(chosen if chosen and self.base.findData(chosen) >= 0 else default)
        self._say_base()

    def select_base(self, path: str | None) -> None:
        index = self.base.findData(path) if path else -1
        if index >= 0:
            self.base.setCurrentIndex(index)

    def showEvent(self, event) -> None:
        if not getattr(self, "running", False):
            self._say_length()  # "ends about" is the time from now
        super().showEvent(event)

    def _say_base(self, *_) -> None:
        label = self.base.currentText()
        self.base_note.setText(f"Trains on top of {label}." if label else "No model to start from yet.")

    def _on_length_unit(self, index: int) -> None:
        self.length_stack.setCurrentIndex(index)
        self._say_length()

    def _say_length(self, *_) -> None:
        if self.length_unit.currentData() == "time":
            end = datetime.now() + timedelta(minutes=self.minutes.value())
            self.length_note.setText(f"Ends about {end:%H:%M} if started now; the steps are fitted to the time.")
        else:
            self.length_note.setText("The time per step depends on your machine: the ETA shows once it runs.")

    def ask_name_reuse(self, name: str, new_name: str) -> bool:
        """True: save under `new_name`; False: the user chooses another name."""
        answer = QMessageBox.question(
            self, "Name in use", f"A model named “{name}” exists already. Save the new one as “{new_name}”?\n\n"
            "No: choose another name first.", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            self.name.setFocus()
            self.name.selectAll()
        return answer == QMessageBox.Yes

    def begin_run(self, budget_s: float | None) -> None:
        """A job starts: with a time budget, its progress and ETA come from the clock until it has fitted
        its steps to the time."""
        self._budget_s, self._t0 = budget_s, time.monotonic()
        if budget_s:
            end = datetime.now() + timedelta(seconds=budget_s)
            self.length_note.setText(f"This run ends about {end:%H:%M}.")

    def _on_resume(self) -> None:
        run = self.resume_box.currentData()
        if run:
            self.resumeRequested.emit(run)

    # --- what the window shows here ------------------------------------------------------------
    def settings(self) -> dict:
        folder = self.folder.text().strip()
        timed = self.length_unit.currentData() == "time"
        return {"folder": folder, "mode": self.mode.currentData(), "steps": None if timed else self.steps.value(),
                "time_budget_s": self.minutes.value() * 60.0 if timed else None,
                "name": self.name.text().strip() or (Path(folder).name if folder else "my model"),
                "base": self.base.currentData()}

    def show_scanning(self, done: int, total: int) -> None:
        self.report_summary.setText(f"Reading files… {done} / {total}")

    def show_report(self, report) -> None:
        self.report.clear()
        used = QTreeWidgetItem([f"Used ({len(report.used)})", ""])
        skipped = QTreeWidgetItem([f"Skipped ({len(report.skipped)})", ""])
        for u in report.used:
            QTreeWidgetItem(used, [u["path"], f"{u['notes']} notes"])
        for s in report.skipped:
            item = QTreeWidgetItem(skipped, [s["path"], s["reason"]])
            item.setToolTip(1, s["reason"])
        self.report.addTopLevelItems([used, skipped])
        skipped.setExpanded(True)
        self.report_summary.setText(report.summary())
        if not self.name.text().strip() and self.folder.text().strip():
            self.name.setText(Path(self.folder.text().strip()).name)

    def set_resumable(self, runs: list[tuple[str, str]]) -> None:
        """(label, run folder) of runs that can be resumed."""
        self.resume_box.clear()
        for label, path in runs:
            self.resume_box.addItem(label, path)
        self._update_buttons()

    def set_running(self, running: bool) -> None:
        self.running = running
        self._update_buttons()
        if not running:
            self._say_length()

    def _update_buttons(self) -> None:
        running = getattr(self, "running", False)
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.resume_box.setEnabled(not running and self.resume_box.count() > 0)
        self.resume_button.setEnabled(not running and self.resume_box.count() > 0)

    def show_progress(self, event) -> None:
        total, eta = event.total_steps, event.eta_s
        if self._budget_s and (not total or total >= UNFITTED_STEPS):
            # not fitted yet: the time itself is the progress
            elapsed = time.monotonic() - self._t0
            self.progress.setRange(0, int(self._budget_s))
            self.progress.setValue(min(int(elapsed), int(self._budget_s)))
            self.progress.setFormat(f"{format_duration(elapsed)} / {format_duration(self._budget_s)}")
            total, eta = None, max(0.0, self._budget_s - elapsed)
        elif total:
            self.progress.setFormat("%v / %m steps")
            self.progress.setRange(0, total)
            self.progress.setValue(event.step)
        parts = [f"step {event.step} / {total}"] if total else [f"step {event.step}"]
        if event.tokens_per_s:
            parts.append(f"{event.tokens_per_s:,.0f} tokens/s")
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        if event.loss is not None:
            parts.append(f"loss {event.loss:.3f}")
        if event.val_loss is not None:
            parts.append(f"validation {event.val_loss:.3f}")
        if parts:
            self.stats.setText(" · ".join(parts))
        if event.loss is not None or event.val_loss is not None:
            self.curve.add(event.step, event.loss, event.val_loss)

"""Fine-tuning from the GUI: scan a folder, start / cancel / resume a core.training.train job, and register the
result in the model library so it appears in the picker."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from core import library
from musicapp.panels.finetune_panel import FinetunePanel
from musicapp.workers import ScanWorker, TrainWorker, start_thread, stop_thread


class TrainingController(QObject):
    modelsChanged = Signal()
    runningChanged = Signal(bool)
    finished = Signal(str, dict)   # kind (done | cancelled | error), paths
    message = Signal(str, str)

    def __init__(self, panel: FinetunePanel, user_dir: Path, base_checkpoint, parent=None) -> None:
        """`base_checkpoint()` gives the checkpoint to fine-tune when the panel names none (the model in
        use), or None."""
        super().__init__(parent)
        self.panel, self.user_dir, self.base_checkpoint = panel, Path(user_dir), base_checkpoint
        self.extra_config: dict = {}  # advanced settings (context length, batch...) passed to core.training.train
        self.run_dir: Path | None = None
        self.last_event = None
        self._scan = self._scan_thread = None
        self._train = self._train_thread = None
        panel.folderChosen.connect(self.scan)
        panel.startRequested.connect(self.start)
        panel.cancelRequested.connect(self.cancel)
        panel.resumeRequested.connect(self.resume)
        self.refresh_resumable()

    @property
    def running(self) -> bool:
        return self._train is not None

    # --- scan -----------------------------------------------------------------------------------
    def scan(self, folder: str) -> None:
        if not folder or not Path(folder).is_dir():
            self.message.emit(f"Not a folder: {folder}", "error")
            return
        stop_thread(self._scan, self._scan_thread)
        worker = ScanWorker(folder, str(self.user_dir / "token_cache"))
        worker.progress.connect(self.panel.show_scanning)
        worker.scanned.connect(self.panel.show_report)
        worker.failed.connect(self._on_scan_failed)
        self._scan, self._scan_thread = worker, start_thread(worker, "folder-scan")

    def _on_scan_failed(self, msg: str) -> None:
        self.message.emit(f"Could not read the folder: {msg}", "error")

    # --- train ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        s = self.panel.settings()
        if not s["folder"] or not Path(s["folder"]).is_dir():
            self.message.emit("Choose a folder of MIDI files to learn from first.", "warning")
            return
        base = s.get("base") or self.base_checkpoint()
        if base is None:
            self.message.emit("There is no model to fine-tune: pick a base model first.", "error")
            return
        if not Path(base).is_file():
            self.message.emit(f"The base model {base} is missing: pick another one.", "error")
            return
        name = library.run_name_for(self.user_dir, s["name"])
        if name != s["name"] and not self.panel.ask_name_reuse(s["name"], name):
            return  # the user picks another name
        self.panel.remember_folder(s["folder"])
        run_dir = library.new_run(self.user_dir, s["name"], s["mode"], base, s["folder"])
        config = {"data": s["folder"], "out": str(run_dir), "base": str(base), "mode": s["mode"],
                  "steps": s["steps"], "time_budget_s": s["time_budget_s"],
                  "cache_dir": str(self.user_dir / "token_cache"), **self.extra_config}
        library.update_run(run_dir, config=config)
        self._launch(run_dir, config)
        self.panel.begin_run(s["time_budget_s"])

    def resume(self, run_dir: str) -> None:
        if self.running:
            return
        config = library.run_info(run_dir).get("config")
        if not config:
            self.message.emit(f"Cannot resume {Path(run_dir).name}: its settings are missing.", "error")
            return
        self._launch(Path(run_dir), {**config, "resume": True})
        self.panel.begin_run(None)  # it keeps the length it was fitted to: steps from the first event
        self.panel.curve.set_history(*library.loss_history(run_dir))  # the curve goes on where it stopped

    def _launch(self, run_dir: Path, config: dict) -> None:
        self.run_dir = run_dir
        self.last_event = None
        self.panel.curve.clear()
        self.panel.stats.setText("Starting…")
        worker = TrainWorker(config)
        worker.event.connect(self._on_event)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_thread_done)
        self._train, self._train_thread = worker, start_thread(worker, "training")
        self.panel.set_running(True)
        self.runningChanged.emit(True)

    def cancel(self) -> None:
        if self._train is not None:
            self._train.cancel.set()
            self.panel.stats.setText("Cancelling: saving a checkpoint you can resume…")

    def _on_event(self, event) -> None:
        self.last_event = event
        kind = event.kind
        if kind == "scan" and event.report:
            from core.training.data import ScanReport
            self.panel.show_report(ScanReport(**event.report))
        elif kind in ("step", "eval"):
            self.panel.show_progress(event)
        elif kind == "memory":  # a style's first result: its folder's memory, usable while the style trains
            self.panel.stats.setText(event.message)
            self.message.emit(f"Your folder's {event.message} It is in the model picker now.", "info")
            self.modelsChanged.emit()
        elif kind == "done":
            info = library.update_run(self.run_dir, finished=True, step=event.step, val_loss=event.val_loss)
            self.message.emit(f"Fine-tuning finished: “{info.get('name')}” is now in the model picker.", "info")
            self.modelsChanged.emit()
            self.finished.emit("done", dict(event.paths))
        elif kind == "cancelled":
            library.update_run(self.run_dir, step=event.step)
            self.panel.stats.setText(f"Cancelled at step {event.step}; you can resume it.")
            self.modelsChanged.emit()
            self.finished.emit("cancelled", dict(event.paths))
        elif kind == "error":
            self.message.emit(f"Fine-tuning failed: {event.message}", "error")
            self.panel.stats.setText("Failed.")
            self.finished.emit("error", {})

    def _on_failed(self, msg: str) -> None:
        self.message.emit(f"Fine-tuning failed: {msg}", "error")
        self.finished.emit("error", {})

    def _on_thread_done(self) -> None:
        thread = self._train_thread
        self._train = self._train_thread = None
        if thread is not None:
            thread.wait()
        self.panel.set_running(False)
        self.refresh_resumable()
        self.runningChanged.emit(False)

    def refresh_resumable(self) -> None:
        runs = library.resumable_runs(self.user_dir)
        self.panel.set_resumable([(library.run_info(r).get("name") or r.name, str(r)) for r in runs])

    def shutdown(self) -> None:
        stop_thread(self._scan, self._scan_thread)
        stop_thread(self._train, self._train_thread, timeout_ms=120000)

"""Background work for the GUI: each job is a worker object living in its own QThread.

Rules (see the notes on Qt threading): results and progress travel to the GUI thread by signals;
cancelling is a threading.Event set from the GUI thread (a queued slot would arrive after the job);
owners stop every thread before they die with `stop_thread` (cancel, quit, wait). Heavy imports
(torch, core.network.model, core.training.train, core.generate) happen inside `run`, on the worker's thread, so the
window opens fast and never waits on them.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque

from PySide6.QtCore import QObject, QThread, Qt, Signal, Slot


class Worker(QObject):
    failed = Signal(str)
    finished = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.cancel = threading.Event()

    @Slot()
    def run(self) -> None:
        try:
            self.work()
        except Exception as e:  # every failure reaches the user as a message, never a crash
            traceback.print_exc()
            self.failed.emit(f"{type(e).__name__}: {e}" if not str(e) else str(e))
        finally:
            self.finished.emit()

    def work(self) -> None:
        raise NotImplementedError


def start_thread(worker: Worker, name: str) -> QThread:
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # direct: quit() is thread-safe, and a queued quit would wait for a GUI thread that may be waiting on us
    worker.finished.connect(thread.quit, Qt.DirectConnection)
    thread.start()
    return thread


def stop_thread(worker: Worker | None, thread: QThread | None, timeout_ms: int = 15000) -> bool:
    """Cancel, quit and wait: True when the thread has ended."""
    if worker is not None:
        worker.cancel.set()
    if thread is None:
        return True
    thread.quit()
    return thread.wait(timeout_ms)


# --- model loading ------------------------------------------------------------------------------
def describe_device() -> str:
    import torch
    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU ({torch.get_num_threads()} threads)"


class ModelLoader(Worker):
    """Imports torch, loads a checkpoint (and a style file) and hands back a ready generator; given the
    generator already holding that checkpoint, only applies the style to it (no reload)."""
    loaded = Signal(object, str)  # generator, device description

    def __init__(self, checkpoint: str, style: str | None = None, strength: float = 1.0, generator=None) -> None:
        super().__init__()
        self.checkpoint, self.style, self.strength, self.generator = checkpoint, style, strength, generator

    def work(self) -> None:
        from musicapp import engine
        if self.generator is not None:
            generator = self.generator
            engine.switch_style(generator, self.style, self.strength)
        else:
            generator = engine.load_generator(self.checkpoint, self.style, self.strength)
        if not self.cancel.is_set():
            self.loaded.emit(generator, describe_device())


# --- generation ---------------------------------------------------------------------------------
class GenerationWorker(Worker):
    """Streams a continuation: every note goes to the roll (signal) and, for the variation being heard,
    straight into `feed` from this thread (no hop through the GUI thread) for playback."""
    opened = Signal(int, int)         # the bars it fills: start (a bar line) and end (-1: no limit)
    noteReady = Signal(int, object)   # variation, Note
    done = Signal(int, float)         # notes generated, seconds

    def __init__(self, generator, prompt, start_tick: int, params: dict, feed=None, heard_variation: int = 0):
        super().__init__()
        self.generator, self.prompt, self.start_tick, self.params = generator, prompt, start_tick, params
        self.feed, self.heard_variation = feed, heard_variation

    def open_stream(self):
        from musicapp import engine
        return engine.open_stream(self.generator, self.prompt, self.start_tick, self.params)

    def backing(self, stream) -> list:
        """Notes of the piece to play along with the stream's, in order of their start (none here)."""
        return []

    def work(self) -> None:
        t0, count = time.perf_counter(), 0
        stream = None
        try:
            stream = self.open_stream()
            self.opened.emit(stream.start_tick, -1 if stream.end_tick is None else stream.end_tick)
            backing = deque(self.backing(stream) if self.feed is not None else ())
            for item in stream:
                if self.cancel.is_set():
                    break
                if self.feed is not None and item.variation == self.heard_variation:
                    while backing and backing[0].start <= item.note.start:  # the feed plays in order
                        self.feed.put(backing.popleft())
                    self.feed.put(item.note)
                self.noteReady.emit(item.variation, item.note)
                count += 1
            if not self.cancel.is_set():
                for note in backing:
                    self.feed.put(note)
        finally:
            if stream is not None:
                stream.close()
            if self.feed is not None:
                self.feed.finish()
        self.done.emit(count, time.perf_counter() - t0)


class InfillWorker(GenerationWorker):
    """Streams regenerated bars (or a new part) like a continuation, and plays them with the notes of the
    piece that stay in those bars. Before `opened`, `replacing` names the document notes (ids) that the
    new ones replace."""
    replacing = Signal(list)

    def __init__(self, generator, score, start_tick: int, end_tick: int, params: dict, notes_by_id: dict,
                 locked=(), part=None, feed=None, heard_variation: int = 0):
        super().__init__(generator, score, start_tick, params, feed, heard_variation)
        self.end_tick, self.notes_by_id, self.locked, self.part = end_tick, notes_by_id, list(locked), part

    def open_stream(self):
        from musicapp import engine
        stream = engine.open_infill(self.generator, self.prompt, self.start_tick, self.end_tick, self.params,
                                    self.locked, self.part)
        self.replacing.emit([i for i, n in self.notes_by_id.items() if engine.replaced_by(stream, n)])
        return stream

    def backing(self, stream) -> list:
        return sorted((n for n in stream.kept if stream.start_tick <= n.start < stream.end_tick),
                      key=lambda n: n.start)


# --- folder scan --------------------------------------------------------------------------------
class ScanWorker(Worker):
    """Reads a training folder and reports which files are used and which are skipped, and why."""
    scanned = Signal(object)    # core.training.data.ScanReport
    progress = Signal(int, int)

    def __init__(self, folder: str, cache_dir: str | None) -> None:
        super().__init__()
        self.folder, self.cache_dir = folder, cache_dir

    def work(self) -> None:
        from core.training import data
        from core.tokenizer import Tokenizer
        _, report = data.scan_folder(self.folder, Tokenizer(), cache_dir=self.cache_dir, workers=1,
                                     progress=lambda done, total: self.progress.emit(done, total))
        self.scanned.emit(report)


# --- training -----------------------------------------------------------------------------------
class TrainWorker(Worker):
    """Owns a core.training.train job (the compute runs in a child process) and relays its events."""
    event = Signal(object)  # core.training.train_config.TrainEvent

    POLL_S = 0.1

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config

    def work(self) -> None:
        from core.training.train_config import TrainConfig
        from core.training.train_job import start_job
        job = start_job(TrainConfig.from_dict(self.config))
        cancelled = False
        while job.running:
            for event in job.poll_events():
                self.event.emit(event)
            if self.cancel.is_set() and not cancelled:
                job.cancel()  # the child checkpoints and stops before its next step
                cancelled = True
            self.cancel.wait(self.POLL_S) if not cancelled else time.sleep(self.POLL_S)
        for event in job.poll_events():
            self.event.emit(event)

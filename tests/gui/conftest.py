"""GUI test set-up: offscreen Qt, a private settings file and data folder per test, and a window
that is always shut down properly (threads stopped, notes released)."""
from __future__ import annotations

import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from core.live import JACK_BACKEND  # noqa: E402
from musicapp.settings import AppPaths, Preferences  # noqa: E402
from tools.jack import MidiRecorder  # noqa: E402


@pytest.fixture
def app_paths(tmp_path):
    resources = tmp_path / "resources"
    resources.mkdir()
    return AppPaths(resources, tmp_path / "user")


@pytest.fixture
def prefs(tmp_path):
    return Preferences(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))


@pytest.fixture(autouse=True)
def main_thread_gc(qapp):
    """As the app does: the cycle collector runs on the GUI thread only (musicapp/main_thread_gc.py)."""
    from musicapp.main_thread_gc import MainThreadGC
    collector = MainThreadGC()
    yield collector
    collector.stop()
    collector.collect()


@pytest.fixture
def make_window(qtbot, app_paths, prefs):
    """make_window(start=False): a shown MainWindow; start=True also runs the background start-up."""
    from musicapp.main_window import MainWindow
    windows = []

    def make(start: bool = False, paths: AppPaths | None = None):
        w = MainWindow(paths or app_paths, prefs, confirm_discard=False)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        if start:
            w.start_background_loading()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()  # closeEvent: cancel, quit and wait every thread


@pytest.fixture
def jack_window(jack_server, monkeypatch, make_window, prefs):
    monkeypatch.setenv("MIDO_BACKEND", JACK_BACKEND)
    with MidiRecorder() as rx:
        prefs.set("midi/output", rx.port_name)
        w = make_window(start=True)
        time.sleep(0.1)  # JACK makes the connection in its next process cycle
        yield w, rx


@pytest.fixture
def capture(jack_server, monkeypatch):
    """capture(): a recorder of the built-in synth's JACK outputs, in its own process (one in this process
    would deadlock with rtmidi's JACK calls here), started once the window's synth is up."""
    from tools.audio_capture import CaptureProcess
    monkeypatch.setenv("RWKV_MUSIC_AUDIO_BACKEND", "jack")  # no sound card here: the suite's JACK server
    started = []

    def start() -> CaptureProcess:
        started.append(CaptureProcess("RWKV-Music"))
        time.sleep(0.2)  # JACK connects it in a later cycle
        return started[-1]

    yield start
    for cap in started:
        cap.close()

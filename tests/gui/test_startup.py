"""The window opens fast (measured in a fresh process, imports included) and torch is only imported
after it is on screen; closing with work in flight stops every thread cleanly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from musicapp.main_window import MainWindow
from musicapp.settings import AppPaths, Preferences
w = MainWindow(AppPaths(sys.argv[1], sys.argv[2]), Preferences(QSettings(sys.argv[3], QSettings.IniFormat)))
w.show()
while not w.windowHandle() or not w.windowHandle().isExposed():
    app.processEvents()
app.processEvents()
shown = time.perf_counter() - t0
print(json.dumps({"seconds": shown, "torch_loaded": "torch" in sys.modules}))
"""


def test_window_opens_in_under_two_seconds_without_torch(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "res"), str(tmp_path / "user"),
                          str(tmp_path / "s.ini")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["torch_loaded"], "torch must load after the window shows"
    assert result["seconds"] < 2.0, f"the window took {result['seconds']:.2f} s to open"


def test_close_while_busy_stops_threads(make_window, app_paths, qtbot):
    """Close during model loading: closeEvent waits for the loader, nothing is left running."""
    from tests.gui.models import make_tiny_checkpoint
    make_tiny_checkpoint(app_paths.resources / "tiny.pth")
    w = make_window(start=True)
    assert w.generation._loader_thread is not None
    thread = w.generation._loader_thread
    w.close()
    assert not thread.isRunning()
    assert not w.transport.playing

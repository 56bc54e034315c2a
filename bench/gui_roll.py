"""Piano roll speed with many notes (offscreen): load, a full repaint of the roll, select all, transpose all.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/gui_roll.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    import tempfile

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from core.score import Note, Score
    from musicapp.main_window import MainWindow
    from musicapp.settings import AppPaths, Preferences

    tmp = Path(tempfile.mkdtemp())
    w = MainWindow(AppPaths(tmp / "r", tmp / "u"), Preferences(QSettings(str(tmp / "s.ini"), QSettings.IniFormat)),
                   confirm_discard=False)
    w.resize(1440, 860)
    w.show()
    app.processEvents()
    print(f"{'notes':>7} {'load ms':>8} {'repaint ms':>11} {'select all ms':>14} {'transpose ms':>13}")
    for count in (1_000, 10_000, 50_000):
        notes = [Note((i // 8) * 120, 110, 36 + (i * 7) % 60, 64 + i % 60) for i in range(count)]
        t0 = time.perf_counter()
        w.doc.load_score(Score(notes))
        w.roll.zoom_to_fit()
        app.processEvents()
        load = time.perf_counter() - t0
        vp = w.roll.view.viewport()
        vp.grab()
        t0 = time.perf_counter()
        for _ in range(5):
            vp.grab()
        repaint = (time.perf_counter() - t0) / 5
        t0 = time.perf_counter()
        w.roll.select_all()
        select = time.perf_counter() - t0
        t0 = time.perf_counter()
        w._transpose(1)
        transpose = time.perf_counter() - t0
        print(f"{count:>7} {load * 1e3:>8.0f} {repaint * 1e3:>11.1f} {select * 1e3:>14.0f} {transpose * 1e3:>13.0f}")
    w.close()


if __name__ == "__main__":
    main()

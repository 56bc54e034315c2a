"""Application entry: show the window first, then load the heavy parts (torch, the model) in the background."""
from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from musicapp.settings import APPLICATION, ORGANIZATION


def run(argv: list[str]) -> int:
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    from musicapp.main_thread_gc import MainThreadGC
    collector = MainThreadGC(app)  # Qt objects must never be freed by a worker thread's gc run
    app.aboutToQuit.connect(collector.stop)
    from musicapp.main_window import MainWindow
    window = MainWindow()
    window.show()
    files = [a for a in argv[1:] if a.lower().endswith((".mid", ".midi"))]
    if files:
        QTimer.singleShot(0, lambda: window.open_file(files[0]))
    QTimer.singleShot(0, window.start_background_loading)
    return app.exec()


if __name__ == "__main__":
    sys.exit(run(sys.argv))

"""Save docs/midi_system.png: the MIDI tab with JACK chosen, the app's virtual output feeding a "DAW".

Runs offscreen with real ports: a private JACK server (dummy driver) and a recorder client standing in for
the DAW, both stopped at the end. Needs jackd (apt-get install jackd2).

    .venv/bin/python tools/screenshot_midi.py [--out docs]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs"))
    args = p.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from tools.jack import JackServer, MidiRecorder

    app = QApplication(sys.argv[:1])
    from musicapp.main_window import MainWindow
    from musicapp.settings import AppPaths, Preferences

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.005)

    tmp = Path(tempfile.mkdtemp(prefix="rwkv-music-midi-shot-"))
    (tmp / "resources").mkdir()
    os.environ.pop("MIDO_BACKEND", None)
    with JackServer(period=256), MidiRecorder("Ardour") as daw, MidiRecorder("keyboard"):
        prefs = Preferences(QSettings(str(tmp / "s.ini"), QSettings.IniFormat))
        prefs.midi_api = "jack"
        w = MainWindow(AppPaths(tmp / "resources", tmp / "user"), prefs, confirm_discard=False)
        w.resize(1100, 640)
        w.show()
        w.start_background_loading()
        w.midi_panel.refresh.click()  # the lists as a user sees them once the app's port exists
        for i in range(w.panels.count()):
            if w.panels.tabText(i) == "MIDI":
                w.panels.setCurrentIndex(i)
        w.messages.hide()
        pump(0.3)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        w.grab().save(str(out / "midi_system.png"))
        print(f"saved {out / 'midi_system.png'}; the DAW's port: {daw.port_name}")
        w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

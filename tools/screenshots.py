"""Save screenshots of the app's main states to docs/: empty, a piece loaded, a continuation streaming,
where Continue puts its bars (insert / replace), bars regenerated and a part added (infill), fine-tuning
with its loss curve. Runs offscreen with real
components (a real model, a real training job).

    .venv/bin/python tools/screenshots.py [--out docs] [--model resources/xxx.pth] [--only placement infill]

Without --model it uses the first bundled model in resources/, else a small untrained RWKV-7 made here
(its music is noise, but the states look as they do with a real model).
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
    p.add_argument("--model")
    p.add_argument("--piece", default=str(ROOT / "tests/data/corpus/bach/bwv10.7.mid"))
    p.add_argument("--only", nargs="+", choices=["basic", "placement", "infill", "tracks", "finetune", "help"],
                   help="take only these groups of pictures (default: all)")
    args = p.parse_args(argv)
    groups = set(args.only or ["basic", "placement", "infill", "tracks", "finetune", "help"])

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from musicapp.main_window import MainWindow
    from musicapp.settings import AppPaths, Preferences

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rwkv-music-shots-"))
    resources = tmp / "resources"
    resources.mkdir()
    bundled = sorted((ROOT / "resources").glob("*.pth"))
    model = Path(args.model) if args.model else (bundled[0] if bundled else None)
    if model is not None:
        shutil.copy(model, resources / model.name)
    else:
        from tests.gui.models import make_tiny_checkpoint
        make_tiny_checkpoint(resources / "demo-base.pth", n_layer=2, n_embd=128)

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.005)

    def wait_for(cond, timeout: float) -> None:
        end = time.perf_counter() + timeout
        while not cond() and time.perf_counter() < end:
            pump(0.05)

    def shot(name: str) -> None:
        pump(0.2)
        path = out / name
        w.grab().save(str(path))
        print(f"saved {path}")

    w = MainWindow(AppPaths(resources, tmp / "user"), Preferences(QSettings(str(tmp / "s.ini"), QSettings.IniFormat)),
                   confirm_discard=False)
    w.resize(1440, 860)
    w.show()
    pump(0.3)
    if "basic" in groups:
        shot("empty.png")

    w.start_background_loading()
    w.messages.hide()  # no MIDI system on a headless machine: that notice is not what these pictures show
    wait_for(lambda: w.generation.generator is not None, 120)
    w.open_file(args.piece)
    w.roll.view.center_on_pitch(62)
    if "basic" in groups:
        bar = w.doc.meta.time_signature_at(0).bar_ticks
        w.seek(8 * bar)
        w.set_tempo(84)  # a tempo change at bar 9: the transport bar edits, the ruler marks it
        w.seek(0)
        shot("piece.png")
    if "help" in groups:
        help_shot(w, out, pump)
    if "placement" in groups:
        placement_shots(w, pump, wait_for, shot)
    if "infill" in groups:
        infill_shots(w, pump, wait_for, shot)
    if "basic" in groups:
        continuation_shot(w, wait_for, shot)
    if "tracks" in groups:
        tracks_shot(w, shot)
    if "finetune" in groups:
        finetune_shot(w, tmp, wait_for, shot)
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def placement_shots(w, pump, wait_for, shot) -> None:
    """Continue from inside the piece: the bars it fills (shaded), then what Accept does to the notes after
    it: Insert draws them where they will go, Replace dims the ones it replaces."""
    from core.arrange import INSERT, REPLACE
    panel = w.continue_panel
    bar = w.doc.meta.time_signature_at(0).bar_ticks
    w.seek(4 * bar + bar // 2)  # inside bar 5: the continuation starts on bar 6
    panel.bars.setValue(2)
    panel.variations.setValue(1)
    panel.temperature.setValue(0.8)
    panel.seed.setValue(5)
    panel.placement.setCurrentIndex(panel.placement.findData(INSERT))
    w.generation.start()
    wait_for(lambda: not w.generation.generating, 120)
    w.transport.stop()
    w.roll.zoom_to_fit()
    w.generation.update_placement_note()
    w.messages.hide()
    shot("continue_insert.png")
    panel.placement.setCurrentIndex(panel.placement.findData(REPLACE))
    w.roll.zoom_to_fit()
    w.generation.update_placement_note()
    shot("continue_replace.png")
    w.generation.reject()
    panel.placement.setCurrentIndex(panel.placement.findData(INSERT))
    w.seek(0)


def infill_shots(w, pump, wait_for, shot) -> None:
    """Bars 5-8 dragged in the ruler, two notes locked, grabbed while the new bars stream in; then a bass
    part written under bars 1-8, shown before it is accepted."""
    panel, doc = w.continue_panel, w.doc
    bar = doc.meta.time_signature_at(0).bar_ticks
    panel.variations.setValue(2)
    panel.temperature.setValue(0.9)
    panel.seed.setValue(4)
    w.roll.zoom_to_fit()
    w.roll.ruler.loopChanged.emit(4 * bar, 8 * bar)  # as a drag over bars 5-8 does
    keep = sorted(i for i, n in doc.items() if 4 * bar <= n.start < 5 * bar)[:2]
    w.roll.scene.set_selection(keep)
    w.generation.lock_selection()
    w.roll.scene.set_selection(())
    w.generation.regenerate_bars()
    wait_for(lambda: len(doc.preview.notes) >= 14 or not w.generation.generating, 60)
    w.messages.hide()
    shot("regenerate_bars.png")
    wait_for(lambda: not w.generation.generating, 120)
    w.transport.stop()
    w.generation.reject()
    w._set_loop(0, 8 * bar, False)  # the bars of the part (the ruler's region), without looping
    panel.infill.set_part_instrument(33)  # Electric Bass (finger)
    panel.variations.setValue(1)
    w.generation.add_part()
    wait_for(lambda: not w.generation.generating, 180)
    w.transport.stop()
    w.roll.zoom_to_fit()
    w.roll.view.center_on_pitch(52)
    w.generation.update_placement_note()
    w.messages.hide()
    shot("add_part.png")
    while doc.undo_stack.canUndo():  # the piece as it was, for the pictures after these
        w.undo()
    w._set_loop(0, 0, False)


def continuation_shot(w, wait_for, shot) -> None:
    """A continuation, grabbed while it streams."""
    end = w.doc.end_tick
    w.roll.zoom_to_fit()
    w.seek(end)
    w.continue_panel.bars.setValue(4)
    w.continue_panel.variations.setValue(2)
    w.continue_panel.temperature.setValue(0.8)
    w.continue_panel.seed.setValue(3)
    w.roll.view.set_zoom(px_per_tick=w.roll.view.viewport().width() / (end + 5 * 1920))
    w.generation.start()
    wait_for(lambda: len(w.doc.preview.notes) >= 25 or not w.generation.generating, 60)
    w.messages.hide()
    shot("continuation.png")
    w.generation.stop()
    wait_for(lambda: not w.generation.generating, 30)


def tracks_shot(w, shot) -> None:
    """The Tracks tab on a POP909 song: three piano tracks in three colours, BRIDGE muted, MELODY selected
    (its notes selected in the roll, where drawn notes would go)."""
    from musicapp.panels.tracks_panel import MUTE
    w.open_file(str(ROOT / "tests/data/pop909/001.mid"))
    w.panels.setCurrentIndex(next(i for i in range(w.panels.count()) if w.panels.tabText(i) == "Tracks"))
    panel = w.tracks_panel
    panel.table.cellWidget(1, MUTE).click()
    panel.select_row(0)
    bar = w.doc.meta.time_signatures[0].bar_ticks
    w.roll.zoom_to_fit()
    view = w.roll.view
    view.set_zoom(px_per_tick=view.viewport().width() / (24 * bar))
    view.horizontalScrollBar().setValue(int(8 * bar * view.px_per_tick))
    w.messages.hide()
    shot("tracks.png")
    panel.select_row(None)
    w.panels.setCurrentIndex(0)


def help_shot(w, out, pump) -> None:
    """Help > Keyboard shortcuts: every key, listed from the window's actions."""
    from musicapp.shortcuts import ShortcutsDialog
    dialog = ShortcutsDialog(w.shortcut_rows(), w)
    dialog.show()
    pump(0.3)
    path = out / "shortcuts.png"
    dialog.grab().save(str(path))
    print(f"saved {path}")
    dialog.close()


def finetune_shot(w, tmp, wait_for, shot) -> None:
    """Fine-tuning, grabbed once the curve has some points."""
    corpus = tmp / "my music"
    corpus.mkdir()
    for f in sorted((ROOT / "tests/data/corpus").rglob("*.mid"))[:12]:
        shutil.copy(f, corpus / f"{f.parent.name}-{f.name}")
    w.panels.setCurrentIndex(1)  # the Fine-tune tab
    panel = w.finetune_panel
    panel.folder.setText(str(corpus))
    w.training.scan(str(corpus))
    wait_for(lambda: "used" in panel.report_summary.text(), 60)
    panel.mode.setCurrentIndex(panel.mode.findData("lora"))  # the length: 10 minutes, the default
    panel.name.setText("My folk tunes")
    w.training.extra_config = {"ctx_len": 128, "batch_size": 4, "eval_every": 10, "max_eval_batches": 2,
                               "threads": 1, "workers": 1}
    w.training.start()
    wait_for(lambda: len(panel.curve.train_points) >= 30 and len(panel.curve.val_points) >= 3, 240)
    w.messages.hide()
    shot("finetune.png")
    w.training.cancel()
    wait_for(lambda: not w.training.running, 120)


if __name__ == "__main__":
    sys.exit(main())

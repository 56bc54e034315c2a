"""Continue in a file whose notes sit off its own beat grid (a raw POP909 file: every onset 13 ticks past a
16th): the model reads the notes moved onto its grid (core.meter's grid shift), and what the roll shows and
keeps comes back on the file's own grid, after the playhead, with the file's notes untouched."""
from __future__ import annotations

import pathlib

from tests.gui.models import make_tiny_checkpoint

FILE = pathlib.Path(__file__).resolve().parents[1] / "data" / "pop909" / "002.mid"
PHASE = 13  # ticks past a 16th (120 ticks) of every onset of FILE
STEP = 20  # the tokenizer's grid: 24 steps a beat of 480 ticks


def test_a_continuation_lands_on_the_files_own_grid(make_window, app_paths, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    assert w.open_file(str(FILE))
    before = sorted((n.start, n.pitch) for n in w.doc.to_score().notes)
    assert {start % 120 for start, _ in before} >= {PHASE}
    panel = w.continue_panel
    panel.bars.setValue(1)
    panel.seed.setValue(7)
    playhead = 40 * 480
    w.seek(playhead)
    with qtbot.waitSignal(w.generation.busyChanged, timeout=120000, check_params_cb=lambda busy: not busy):
        panel.continue_button.click()
    preview = w.doc.preview
    assert preview.start_tick >= playhead and preview.start_tick % 120 == PHASE  # a bar line of the music
    assert preview.notes, "the model produced no notes"
    # on the file's grid (the model's steps, moved back by the view's shift), none before the continuation
    assert all(n.start % STEP == PHASE % STEP and n.start >= preview.start_tick for n in preview.notes)
    assert sorted((n.start, n.pitch) for n in w.doc.to_score().notes) == before  # not in the piece until accepted

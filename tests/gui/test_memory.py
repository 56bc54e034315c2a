"""Memory in the app: the Memory slider steers Continue (0% = the bare network), a style's folder memory is
used once the style is chosen, and the Continue panel shows the copy meter against that folder."""
from __future__ import annotations

import numpy as np

from core import library
from tests.gui.helpers import demo_score
from tests.gui.models import make_tiny_checkpoint


def test_memory_slider_and_a_folder_memory_style_in_continue(make_window, app_paths, qtbot):
    from core.network.checkpoint import load_checkpoint
    from core.network.style import Style, save_style
    from core.tokenizer import Tokenizer

    base = make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    model, _ = load_checkpoint(str(base))
    folder_piece = Tokenizer().encode(demo_score(bars=4))  # the folder holds the piece itself: quotes are likely
    run = library.new_run(app_paths.user_data, "my folder", "style", base)
    save_style(str(run / library.STYLE_FILE), Style(memory_pieces=[np.array(folder_piece)]), model, {"name": "my folder"})
    library.update_run(run, finished=True)

    w = make_window(start=True)
    g = w.generation
    qtbot.waitUntil(lambda: g.generator is not None, timeout=120000)
    w.memory.setValue(0)
    assert g.memory == 0.0 and w.jam.memory == 0.0 and "0%" in w.memory_label.text()
    w.memory.setValue(100)
    assert g.memory == 1.0

    index = next(i for i, m in enumerate(w.models) if m.name == "my folder")
    w.model_box.setCurrentIndex(index)
    w._on_model_chosen(index)
    qtbot.waitUntil(lambda: g.generator is not None and g.generator.folder_memory is not None, timeout=60000)
    assert g.generator.folder_memory.pieces == 1

    w.doc.load_score(demo_score(bars=4))
    panel = w.continue_panel
    panel.bars.setValue(4)
    panel.seed.setValue(7)
    w.seek(4 * 1920)
    with qtbot.waitSignal(g.busyChanged, timeout=120000, check_params_cb=lambda busy: not busy):
        panel.continue_button.click()
    assert len(w.doc.preview.notes) >= 8  # the meter needs one 8-note phrase
    status = panel.status.text()
    assert "Copy meter:" in status and "in your folder" in status

"""What held the GUI thread while a continuation streamed (measured with per-thread CPU and run-queue
times, then removed): a cycle collection walking torch's and the model's objects, and the velocity lane
drawing every note of the continuation on each repaint."""
from __future__ import annotations

import gc
import sys
import time

from core.score import Note
from musicapp.document import Preview
from tests.gui.models import make_tiny_checkpoint


def test_a_loaded_model_is_left_out_of_later_collections(make_window, app_paths, qtbot):
    make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    w = make_window(start=True)
    qtbot.waitUntil(lambda: w.generation.generator is not None, timeout=120000)
    assert "torch" in sys.modules
    assert gc.get_freeze_count() > 100_000, "torch, Qt and the model are not exempt from collections"
    t = time.thread_time()
    gc.collect()
    settled = time.thread_time() - t
    gc.unfreeze()
    t = time.thread_time()
    gc.collect()
    everything = time.thread_time() - t
    # thread CPU time: what the GUI thread itself spends, whatever else the machine runs
    assert settled < everything / 5, (settled, everything)


def test_velocity_lane_draws_only_the_continuation_stems_in_view(make_window, monkeypatch):
    w = make_window()  # an empty piece: every stem drawn is the continuation's
    view, lane = w.roll.view, w.roll.velocity
    view.set_zoom(px_per_tick=0.1, px_per_row=14)
    view.horizontalScrollBar().setValue(0)
    start, end = view.visible_ticks()
    # a long continuation from the middle of the view: a few bars in view, hundreds after it
    first = int((start + end) / 2) // 1920 * 1920
    notes = [Note(first + k * 240, 200, 60 + k % 12, 80) for k in range(4000)]
    w.doc.set_preview(Preview({0: notes}, 0, first))
    assert view.visible_ticks() == (start, end)
    in_view = [n.start for n in notes if start <= n.start <= end]
    assert 0 < len(in_view) < len(notes) // 10
    drawn = []
    stem = lane._stem
    monkeypatch.setattr(lane, "_stem", lambda p, tick, *a: (drawn.append(tick), stem(p, tick, *a)))
    lane.grab()  # paints the lane through its paintEvent
    assert sorted(drawn) == in_view

"""Piano-roll pictures of a prompt and its continuation as PNG, drawn with Qt offscreen (no matplotlib).

Prompt notes are grey, generated notes orange, the true continuation green outlines on top (so where the
model matched the original, orange sits inside green). Bar lines are thin, the continuation point thick.
"""
from __future__ import annotations

import os
from typing import Sequence

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPen  # noqa: E402

PX_PER_BEAT = 40
PX_PER_PITCH = 6
MARGIN = 24


def _app() -> QGuiApplication:
    """Text drawing needs a Gui application; make an offscreen one if the process has none."""
    return QGuiApplication.instance() or QGuiApplication(["render_roll"])


def render_roll(path: str, prompt: Sequence, generated: Sequence, true: Sequence, *, split_tick: int,
                bar_ticks: Sequence[int], ticks_per_beat: int, title: str = "") -> str:
    """Draw the notes (absolute ticks) to a PNG at `path`; returns the path."""
    app = _app()  # noqa: F841 (kept alive while painting)
    everything = [*prompt, *generated, *true]
    pitched = [n.pitch for n in everything] or [60]
    low, high = min(pitched) - 2, max(pitched) + 2
    end = max([n.start + n.duration for n in everything] + [split_tick + 1])
    x_of = lambda tick: MARGIN + tick / ticks_per_beat * PX_PER_BEAT  # noqa: E731
    y_of = lambda pitch: MARGIN + (high - pitch) * PX_PER_PITCH  # noqa: E731
    width = int(x_of(end)) + MARGIN
    height = int(y_of(low)) + PX_PER_PITCH + MARGIN
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    p = QPainter(image)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for pitch in range(low, high + 1):  # black-key rows shaded, as in a piano roll
            if pitch % 12 in (1, 3, 6, 8, 10):
                p.fillRect(QRectF(MARGIN, y_of(pitch), width - 2 * MARGIN, PX_PER_PITCH), QColor(243, 243, 243))
        p.setPen(QPen(QColor(200, 200, 200), 1))
        for tick in bar_ticks:
            if tick <= end:
                p.drawLine(int(x_of(tick)), MARGIN, int(x_of(tick)), height - MARGIN)
        p.setPen(QPen(QColor(40, 40, 40), 2))
        p.drawLine(int(x_of(split_tick)), MARGIN // 2, int(x_of(split_tick)), height - MARGIN // 2)

        def box(n) -> QRectF:
            return QRectF(x_of(n.start), y_of(n.pitch), max(n.duration / ticks_per_beat * PX_PER_BEAT, 2),
                          PX_PER_PITCH - 1)

        p.setPen(Qt.PenStyle.NoPen)
        for notes, colour in ((prompt, QColor(120, 130, 150)), (generated, QColor(240, 140, 30))):
            for n in notes:
                p.fillRect(box(n), colour)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(20, 150, 60), 1))
        for n in true:
            p.drawRect(box(n))
        p.setPen(QColor("black"))
        p.drawText(MARGIN, MARGIN - 8, title + "   grey: prompt, orange: generated, green: original")
    finally:
        p.end()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not image.save(path, "PNG"):
        raise OSError(f"could not write {path}")
    return path

"""Where Continue writes: a click in the ruler puts the playhead on a beat (a bar line when beats are too
narrow to aim at), and the status bar's readout and the Continue panel's note say the same place."""
from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from core import arrange
from core.score import Note, Score, TempoChange, TimeSignature
from tests.gui.helpers import demo_score

BAR = 1920


def click_ruler(w, tick: float) -> None:
    view = w.roll.view
    view.scroll_to_tick(tick)
    QTest.mouseClick(w.roll.ruler, Qt.LeftButton, Qt.NoModifier, QPoint(int(round(view.x_of_tick(tick))), 12))


def test_a_click_just_after_a_bar_line_continues_from_that_bar(make_window, qtbot):
    w = make_window()
    w.doc.load_score(demo_score(bars=40))
    w.roll.view.set_zoom(px_per_tick=0.05)  # a beat is 24 px
    w.continue_panel.bars.setValue(8)
    click_ruler(w, 32 * BAR + 90)  # a little right of bar 33's line, as a hand clicks
    assert w.roll.playhead_tick == 32 * BAR
    assert w.position_label.text().startswith("bar 33.1 ")
    w.generation.update_placement_note()
    assert w.continue_panel.placement_note.text().startswith("Next: bars 33–40")

    click_ruler(w, 19 * BAR + 2 * 480 + 70)  # on beat 3 of bar 20, where the bass still sounds
    assert w.roll.playhead_tick == 19 * BAR + 2 * 480
    assert w.position_label.text().startswith("bar 20.3 ")
    w.generation.update_placement_note()
    note = w.continue_panel.placement_note.text()
    assert note.startswith("Next: bars 21–28, after the playhead (bar 20.3)"), note


def test_zoomed_out_a_click_snaps_to_the_nearest_bar_line(make_window, qtbot):
    w = make_window()
    w.doc.load_score(Score([Note(0, 480, 60)], [TempoChange(0, 120)], [TimeSignature(0, 3, 4)]))
    w.roll.view.set_zoom(px_per_tick=0.01)  # a beat is ~5 px
    click_ruler(w, 10 * 1440 + 1000)  # past the middle of bar 11 (3/4)
    assert w.roll.playhead_tick == 11 * 1440
    assert w.position_label.text().startswith("bar 12.1 ")


def test_the_readout_shows_a_position_between_beats():
    meta = Score([], [TempoChange(0, 120)], [TimeSignature(0, 4, 4), TimeSignature(4 * BAR, 6, 8)])
    assert arrange.position_text(meta, 32) == "1.1.1"  # not "1.1": Continue would start at bar 2
    assert arrange.position_text(meta, 4 * BAR + 3 * 240) == "5.4"  # eighths are the beats of 6/8
    assert arrange.snap_playhead(meta, 4 * BAR - 10) == 4 * BAR

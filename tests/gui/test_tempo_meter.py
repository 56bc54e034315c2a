"""Tempo and time signature are edited in the transport bar: a change at the playhead's bar (the whole
piece at bar 1), shown where the playhead is, undoable, saved to the file and read back."""
from __future__ import annotations

from core.midi import read_midi
from core.score import TempoChange, TimeSignature
from tests.gui.helpers import demo_score

BAR = 1920


def test_a_new_piece_gets_another_tempo_and_meter(make_window):
    w = make_window()
    box = w.tempo_meter
    assert box.tempo.value() == 120 and (box.numerator.value(), box.denominator.currentData()) == (4, 4)
    box.tempo.setValue(96)
    box.numerator.setValue(3)
    assert w.doc.meta.tempos == [TempoChange(0, 96.0)]
    assert w.doc.meta.time_signatures == [TimeSignature(0, 3, 4)]
    w.undo()
    assert w.doc.meta.time_signatures == [TimeSignature(0, 4, 4)] and box.numerator.value() == 4
    w.undo()
    assert w.doc.meta.tempos == [TempoChange(0, 120.0)] and box.tempo.value() == 120


def test_changes_at_a_bar_are_shown_there_saved_and_undone(make_window, tmp_path):
    w = make_window()
    w.doc.load_score(demo_score(bars=8, bpm=100))
    box = w.tempo_meter
    w.seek(4 * BAR + 700)  # inside bar 5
    for _ in range(3):  # arrow clicks: one undo step
        box.tempo.stepBy(10)
    box.denominator.setCurrentIndex(box.denominator.findData(8))
    box.denominator.activated.emit(box.denominator.currentIndex())  # as a click on "8" does
    box.numerator.setValue(6)
    meta = w.doc.meta
    assert meta.tempos == [TempoChange(0, 100.0), TempoChange(4 * BAR, 130.0)]
    assert meta.time_signatures == [TimeSignature(0, 4, 4), TimeSignature(4 * BAR, 6, 8)]
    assert w.position_label.text().startswith("bar 5.")
    w.seek(BAR)
    assert box.tempo.value() == 100 and box.numerator.value() == 4  # bar 2 keeps the piece's start
    w.seek(6 * BAR)
    assert box.tempo.value() == 130 and (box.numerator.value(), box.denominator.currentData()) == (6, 8)
    path = tmp_path / "changes.mid"
    assert w.save_to(str(path))
    back, _ = read_midi(str(path))
    assert back.tempos == meta.tempos and back.time_signatures == meta.time_signatures
    w.undo()  # the meter edits at bar 5, then the tempo edits there: one step each
    assert w.doc.meta.time_signatures == [TimeSignature(0, 4, 4)] and len(w.doc.meta.tempos) == 2
    w.undo()
    assert w.doc.meta.tempos == [TempoChange(0, 100.0)] and not w.doc.undo_stack.canUndo()
    assert len(w.doc) == len(demo_score(bars=8).notes)  # the notes never moved


def test_setting_a_bar_back_to_the_tempo_before_removes_its_change(make_window):
    w = make_window()
    w.doc.load_score(demo_score(bars=4, bpm=100))
    w.seek(2 * BAR)
    w.tempo_meter.tempo.setValue(80)
    assert len(w.doc.meta.tempos) == 2
    w.tempo_meter.tempo.setValue(100)
    assert w.doc.meta.tempos == [TempoChange(0, 100.0)]

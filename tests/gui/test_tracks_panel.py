"""The Tracks panel on a real POP909 song (MELODY, BRIDGE, PIANO, all piano): its rows, renaming and changing
the instrument with undo, selecting a track's notes, drawing into the selected track, the model's notes in a
track of their own, and what a saved file keeps. What plays under mute and solo: test_tracks_jack.py."""
from __future__ import annotations

import pathlib
import time

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from core.midi import read_midi
from core.score import Note
from musicapp import editing
from musicapp.panels.tracks_panel import INSTRUMENT, MUTE, NAME, SOLO
from musicapp.pianoroll import grid

POP = pathlib.Path(__file__).resolve().parents[1] / "data" / "pop909" / "001.mid"


def opened(make_window, qtbot):
    w = make_window()
    assert w.open_file(str(POP))
    return w, w.tracks_panel


def names(panel):
    """The rows' names once the panel has caught up (it redoes its rows once after a burst of edits)."""
    QApplication.processEvents()
    return [panel.table.item(r, NAME).text() for r in range(panel.table.rowCount())]


def saved_tracks(w, tmp_path, name="out.mid"):
    path = tmp_path / name
    assert w.save_to(str(path))
    return [(t.name, t.program, {n.program for n in t.notes}, len(t.notes)) for t in read_midi(path)[0].tracks()]


def test_the_panel_lists_the_tracks_with_their_instrument_and_the_rolls_colour(make_window, qtbot):
    w, panel = opened(make_window, qtbot)
    assert names(panel) == ["MELODY", "BRIDGE", "PIANO"]  # the conductor track holds no notes: no row
    assert [len(r.note_ids) for r in panel.rows] == [264, 307, 985]
    assert [panel.table.cellWidget(r, INSTRUMENT).currentData() for r in range(3)] == [0, 0, 0]
    colours = [r.colour.name() for r in panel.rows]
    assert len(set(colours)) == 3  # three piano tracks, three colours
    assert colours[0] == grid.instrument_colour(0, False).name()  # the first keeps the instrument's
    scene = w.roll.scene
    for r in panel.rows:  # the swatch is the roll's colour for the track's notes
        assert panel.table.item(panel.rows.index(r), 0).data(Qt.UserRole) == r.colour.name()
        for i in r.note_ids[:20]:
            assert scene.colour_of(w.doc.note(i)).name() == r.colour.name()
            assert scene.items_by_id[i].brush().color().hue() == r.colour.hue()


def test_rename_is_an_undoable_edit_and_the_saved_file_keeps_the_names(make_window, qtbot, tmp_path):
    w, panel = opened(make_window, qtbot)
    panel.table.item(0, NAME).setText("Lead vocal")  # as the user's edit of the cell ends
    assert [t.name for t in w.doc.tracks] == ["", "Lead vocal", "BRIDGE", "PIANO"]
    assert names(panel) == ["Lead vocal", "BRIDGE", "PIANO"] and w.doc.is_modified()
    assert [t[0] for t in saved_tracks(w, tmp_path, "renamed.mid")] == ["Lead vocal", "BRIDGE", "PIANO"]
    w.undo()
    assert names(panel) == ["MELODY", "BRIDGE", "PIANO"] and w.doc.is_modified()
    w.redo()
    assert names(panel) == ["Lead vocal", "BRIDGE", "PIANO"] and not w.doc.is_modified()
    w.undo()
    assert names(panel) == ["MELODY", "BRIDGE", "PIANO"] and panel.rows[0].track.name == "MELODY"
    assert [t[0] for t in saved_tracks(w, tmp_path, "undone.mid")] == ["MELODY", "BRIDGE", "PIANO"]


def test_changing_the_instrument_changes_the_tracks_notes_colour_and_file_and_undoes(make_window, qtbot, tmp_path):
    w, panel = opened(make_window, qtbot)
    box = panel.table.cellWidget(2, INSTRUMENT)
    box.setCurrentIndex(40)
    box.activated.emit(40)  # as a choice in the list does
    QApplication.processEvents()
    piano = panel.rows[2]
    assert piano.track.program == 40 and panel.table.cellWidget(2, INSTRUMENT).currentData() == 40
    assert {w.doc.note(i).program for i in piano.note_ids} == {40}
    assert {w.doc.note(i).program for r in panel.rows[:2] for i in r.note_ids} == {0}
    assert w.roll.scene.colour_of(w.doc.note(piano.note_ids[0])).name() == grid.instrument_colour(40, False).name()
    assert saved_tracks(w, tmp_path, "violin.mid") == [("MELODY", 0, {0}, 264), ("BRIDGE", 0, {0}, 307),
                                                       ("PIANO", 40, {40}, 985)]
    w.undo()
    QApplication.processEvents()
    assert [r.track.program for r in panel.rows] == [0, 0, 0]
    assert {n.program for n in w.doc.notes()} == {0}
    assert saved_tracks(w, tmp_path, "piano.mid") == [("MELODY", 0, {0}, 264), ("BRIDGE", 0, {0}, 307),
                                                      ("PIANO", 0, {0}, 985)]


def test_selecting_a_track_selects_its_notes_and_drawn_notes_go_to_it(make_window, qtbot, tmp_path):
    w, panel = opened(make_window, qtbot)
    panel.select_row(1)
    bridge = [i for i, n in w.doc.items() if n.track == 2]
    assert w.roll.selected_ids() == sorted(bridge) and len(bridge) == 307
    view = w.roll.view
    view.set_zoom(px_per_tick=0.1, px_per_row=14)
    view.horizontalScrollBar().setValue(0)
    view.center_on_pitch(100)
    before = set(w.doc.ids())
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier,
                     view.mapFromScene(QPointF(240, grid.row_of(100) + 0.5)))
    (new,) = set(w.doc.ids()) - before
    assert w.doc.note(new).track == 2 and w.doc.note(new).pitch == 100
    assert w.roll.scene.colour_of(w.doc.note(new)).name() == panel.rows[1].colour.name()
    saved = saved_tracks(w, tmp_path)
    assert [(name, count) for name, _, _, count in saved] == [("MELODY", 264), ("BRIDGE", 308), ("PIANO", 985)]
    panel.select_row(None)
    assert w.roll.view.draw_track == (None, 0, False)


def test_the_models_notes_get_a_row_that_an_edit_makes_a_track_of_the_piece(make_window, qtbot, tmp_path):
    w, panel = opened(make_window, qtbot)
    # notes that name no track, as an accepted continuation's: a violin line
    editing.add(w.doc, [Note(k * 480, 480, 76 + k % 3, 90, program=40) for k in range(6)], "Accept continuation")
    assert names(panel) == ["MELODY", "BRIDGE", "PIANO", "Violin"] and panel.rows[3].is_new
    panel.set_muted(3, True)
    assert panel.muted == {("new", 40, False)}
    panel.table.item(3, NAME).setText("Strings")
    assert [t.name for t in w.doc.tracks] == ["", "MELODY", "BRIDGE", "PIANO", "Strings"]
    assert not panel.rows[3].is_new and panel.muted == {4}  # the mute follows the track
    assert {w.doc.note(i).track for i in panel.rows[3].note_ids} == {4}
    assert [t[0] for t in saved_tracks(w, tmp_path)] == ["MELODY", "BRIDGE", "PIANO", "Strings"]
    w.undo()
    assert names(panel) == ["MELODY", "BRIDGE", "PIANO", "Violin"] and len(w.doc.tracks) == 4


def test_mute_and_solo_buttons_say_what_plays(make_window, qtbot):
    w, panel = opened(make_window, qtbot)
    changes = []
    panel.mixChanged.connect(lambda: changes.append(1))
    panel.table.cellWidget(2, MUTE).click()
    panel.table.cellWidget(0, SOLO).click()
    assert panel.muted == {3} and panel.soloed == {1} and len(changes) == 2
    heard = panel.audible(w.doc.to_score())
    assert len(heard.notes) == 264
    panel.table.cellWidget(0, SOLO).click()
    assert len(panel.audible(w.doc.to_score()).notes) == 264 + 307
    w.open_file(str(POP))  # another piece: everything plays again
    assert not panel.muted and not panel.soloed
    assert not any(panel.table.cellWidget(r, MUTE).isChecked() for r in range(3))


def test_the_rows_keep_up_with_ten_thousand_notes(make_window, qtbot):
    w, panel = opened(make_window, qtbot)
    notes = [Note((k // 8) * 120, 110, 36 + (k * 7) % 60, 80, track=3) for k in range(10_000)]
    editing.add(w.doc, notes)
    t0 = time.perf_counter()
    panel.refresh()
    refresh_s = time.perf_counter() - t0
    assert len(panel.rows[2].note_ids) == 985 + 10_000
    # measured ~0.1 s on an idle 2-core machine; generous for a loaded one
    assert refresh_s < 2.0, refresh_s


def test_tracks_of_one_instrument_get_colours_of_their_own_clear_of_the_previews():
    preview = grid.PREVIEW_FILL.hue()
    for drum in (False, True):
        colours = grid.track_colours((i, 0, drum) for i in range(12))
        assert len({c.name() for c in colours.values()}) == 12
        for c in list(colours.values())[1:]:
            assert min(abs(c.hue() - preview), 360 - abs(c.hue() - preview)) >= 20, c.name()
    assert grid.track_colours([(3, 40, False), (5, 0, False), (7, 40, False)])[3] == grid.instrument_colour(40, False)


def test_opening_another_piece_leaves_no_widgets_of_the_old_rows_on_show(make_window, qtbot):
    from PySide6.QtWidgets import QComboBox, QToolButton
    w = make_window()
    chorale = POP.parents[1] / "corpus" / "bach" / "bwv10.7.mid"
    assert w.open_file(str(chorale)) and len(w.tracks_panel.rows) == 4
    assert w.open_file(str(POP))
    w.panels.setCurrentIndex(next(i for i in range(w.panels.count()) if w.panels.tabText(i) == "Tracks"))
    panel = w.tracks_panel
    shown = [c for c in panel.table.findChildren(QComboBox) if c.isVisible()]
    assert len(shown) == 3 and len([b for b in panel.table.findChildren(QToolButton) if b.isVisible()]) == 6
    box = panel.table.cellWidget(0, INSTRUMENT)
    editing.add(w.doc, [Note(0, 480, 90, track=1)])
    assert names(panel) == ["MELODY", "BRIDGE", "PIANO"] and len(panel.rows[0].note_ids) == 265
    assert panel.table.cellWidget(0, INSTRUMENT) is box  # an edit does not rebuild the row's widgets


def test_an_added_part_gets_a_colour_no_other_track_has():
    # Electric Bass's own hue (201) sits next to the piano's (200): the bass track is turned away from it
    assert abs(grid.instrument_colour(33, False).hue() - grid.instrument_colour(0, False).hue()) < 5
    tracks = [(1, 0, False), (2, 0, False), (3, 0, False), (4, 33, False), (5, 0, True), (6, 73, False)]
    colours = grid.track_colours(tracks)
    hues = [c.hue() for k, c in colours.items() if k != 5]
    for i, a in enumerate(hues):
        for b in hues[i + 1:]:
            assert min(abs(a - b), 360 - abs(a - b)) >= grid.MIN_HUE_APART, (a, b)
    for program in range(128):  # whatever the part's instrument, beside a pop song's three piano tracks
        colours = grid.track_colours(tracks[:3] + [(4, program, False)])
        assert len({c.name() for c in colours.values()}) == 4

"""What a new user finds without reading tooltips: every key in a menu and in Help > Keyboard shortcuts,
recent files, Home bringing the start into view, View > Assistant, and window keys that a focused number
field or slider does not swallow."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog

from tests.gui.helpers import demo_score, write_demo


def test_every_key_named_in_a_tooltip_is_in_a_menu_and_the_shortcut_list(make_window):
    w = make_window()
    rows = {(menu, keys) for menu, _, keys in w.shortcut_rows()}
    for menu, keys in (("Generate", "Ctrl+Return"), ("Generate", "Ctrl+R"), ("Generate", "Shift+L"),
                       ("Transport", "Space"), ("Transport", "L"), ("Transport", "Home"), ("File", "Ctrl+E")):
        assert (menu, keys) in rows, (menu, keys)
    assert "Help" in [m.title().replace("&", "") for m in w.menus]


def test_view_assistant_hides_and_shows_the_panels(make_window, qtbot):
    w = make_window()
    assert w.act_assistant.isEnabled()
    w.act_assistant.trigger()
    assert not w.panel_dock.isVisible()
    w.act_assistant.trigger()
    assert w.panel_dock.isVisible()


def test_recent_files_reopen_and_forget_what_is_gone(make_window, tmp_path):
    w = make_window()
    first, second = tmp_path / "first.mid", tmp_path / "second.mid"
    write_demo(first, bars=2)
    write_demo(second, bars=3)
    assert w.open_file(str(first)) and w.open_file(str(second))
    assert w.recent_files() == [str(second.resolve()), str(first.resolve())]
    w._fill_recent_menu()
    entries = [a for a in w.recent_menu.actions() if a.toolTip() == str(first.resolve())]
    entries[0].trigger()
    assert w.doc.path == str(first) or Path(w.doc.path).resolve() == first.resolve()
    assert w.recent_files()[0] == str(first.resolve())
    second.unlink()
    assert not w.open_recent(str(second.resolve()))
    assert "no longer" in w.messages.text and str(second.resolve()) not in w.recent_files()


def test_home_brings_the_start_into_view(make_window):
    w = make_window()
    w.doc.load_score(demo_score(bars=48))
    w.roll.view.set_zoom(px_per_tick=0.1)
    w.seek(40 * 1920)
    w.roll.view.scroll_to_tick(40 * 1920)
    w.act_home.trigger()
    start, end = w.roll.view.visible_ticks()
    assert w.roll.playhead_tick == 0 and start <= 0 <= end


def test_a_focused_number_field_or_slider_leaves_home_and_export_to_the_window(make_window, qtbot, monkeypatch):
    exported = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (exported.append(1), ("", ""))[1])
    w = make_window()
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    w.doc.load_score(demo_score(bars=8))
    for field in (w.continue_panel.bars, w.strength):  # a number field, a slider
        w.seek(5 * 1920)
        field.setFocus()
        qtbot.waitUntil(lambda: QApplication.focusWidget() is field)
        value = field.value()
        QTest.keyClick(field, Qt.Key_Home)
        assert w.roll.playhead_tick == 0 and field.value() == value
        QTest.keyClick(field, Qt.Key_E, Qt.ControlModifier)
        assert len(exported) == 1
        exported.clear()
        QTest.keyClick(field, Qt.Key_Up)  # its own keys still work
        assert field.value() != value

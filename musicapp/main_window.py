"""The main window: the piano roll in the middle, transport and edit tools on top, panels on the right.

It wires widgets to the document and to core; it holds no music or ML logic itself.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QApplication, QComboBox, QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow,
                               QMenu, QMessageBox, QScrollArea, QSlider, QStyle, QTabWidget, QToolBar, QVBoxLayout,
                               QWidget)

from core import library
from core.arrange import bar_start_at, bars_between, position_text
from core.live import choose_midi_api, list_ports, midi_api_label, midi_apis, supports_virtual_ports
from core.live.synth import SynthError, audio_devices, render_score, write_wav
from core.midi import MidiReadError, read_midi, write_midi
from core.score import Note, Score, meter_from, tempo_from
from musicapp import commands, editing
from musicapp.controllers.generation import GenerationController
from musicapp.controllers.jam import JamController
from musicapp.controllers.recording import RecordController
from musicapp.controllers.training import TrainingController
from musicapp.document import NoteDocument
from musicapp.dragout import DragOutButton
from musicapp.messages import MessageBar
from musicapp.panels.continue_panel import ContinuePanel
from musicapp.panels.finetune_panel import FinetunePanel
from musicapp.panels.midi_panel import SYNTH, VIRTUAL, MidiPanel
from musicapp.panels.tracks_panel import TracksPanel
from musicapp.pianoroll.widget import PianoRoll
from musicapp.pianoroll.view import Tool, midi_paths
from musicapp.settings import AppPaths, Preferences
from musicapp.shortcuts import ShortcutGuard, ShortcutsDialog, shortcut_rows
from musicapp.tempo_meter import TempoMeterBox
from musicapp.transport import Transport

MIDI_FILTER = "MIDI files (*.mid *.midi)"
WAV_FILTER = "WAV audio (*.wav)"
RECENT_FILES = 10


def _scrolling(panel: QWidget) -> QScrollArea:
    """A panel that scrolls instead of making the window taller than a laptop screen."""
    area = QScrollArea()
    area.setWidget(panel)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    # as wide as the panel needs, with room for the vertical scroll bar: only the height gives way
    area.setMinimumWidth(panel.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area


class MainWindow(QMainWindow):
    def __init__(self, paths: AppPaths | None = None, preferences: Preferences | None = None,
                 confirm_discard: bool = True) -> None:
        super().__init__()
        self.paths = paths or AppPaths.default()
        self.prefs = preferences or Preferences()
        self.confirm_discard = confirm_discard
        self.doc = NoteDocument(self)
        self.clipboard: list[Note] = []

        self._build_central()
        self._build_panel_dock()
        self.transport = Transport(self)
        self._advice = ""  # what to do when no MIDI system runs: said once the output has settled
        self._build_panels()
        self.models: list[library.ModelEntry] = []
        self._build_controllers()
        self._build_status_bar()

        self._build_actions()
        self._build_toolbars()
        self._build_menus()
        self.shortcut_guard = ShortcutGuard(self)
        self._connect()
        self.doc.modifiedChanged.connect(self._update_title)
        self.doc.documentReset.connect(self._update_title)
        self.setAcceptDrops(True)
        self.resize(1360, 820)
        self.resizeDocks([self.panel_dock], [400], Qt.Horizontal)  # the roll gets the room
        self._update_title()
        self._update_tempo_meter()
        QTimer.singleShot(0, lambda: (self.roll.view.center_on_pitch(60), self.roll.view.setFocus()))

    def _build_central(self) -> None:
        """The message bar over the piano roll."""
        self.roll = PianoRoll(self.doc)
        self.messages = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.messages)
        layout.addWidget(self.roll, 1)
        self.setCentralWidget(central)

    def _build_panel_dock(self) -> None:
        """The "Assistant" dock on the right, holding the panels' tabs."""
        self.panels = QTabWidget()
        self.panels.setDocumentMode(True)
        self.panel_dock = QDockWidget("Assistant", self)
        self.panel_dock.setObjectName("assistant")
        # closable, so View > Assistant can hide and show it (Qt disables the toggle of an unclosable dock)
        self.panel_dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                                    | QDockWidget.DockWidgetClosable)
        self.panel_dock.setWidget(self.panels)
        self.addDockWidget(Qt.RightDockWidgetArea, self.panel_dock)

    def _build_panels(self) -> None:
        """The Continue, Fine-tune, MIDI and Tracks panels, each a scrolling tab of the dock."""
        self.continue_panel = ContinuePanel(self.prefs)
        self.finetune_panel = FinetunePanel(self.prefs)
        self.midi_panel = MidiPanel(self.prefs)
        self.tracks_panel = TracksPanel(self.doc, self.roll)
        for panel, title in ((self.continue_panel, "Continue"), (self.finetune_panel, "Fine-tune"),
                             (self.midi_panel, "MIDI"), (self.tracks_panel, "Tracks")):
            self.panels.addTab(_scrolling(panel), title)

    def _build_controllers(self) -> None:
        """What runs generation, training, jamming and recording for the panels."""
        self.generation = GenerationController(self.doc, self.roll, self.transport, self.continue_panel, self)
        self.training = TrainingController(self.finetune_panel, self.paths.user_data, self.base_checkpoint, self)
        self.jam = JamController(self.doc, self.roll, self.transport, self.midi_panel, self)
        self.recorder = RecordController(self.doc, self.roll, self.transport, self.midi_panel, self)

    def _build_status_bar(self) -> None:
        """The playhead's position and the model's device, at the right of the status bar."""
        self.device_label = QLabel("model: loading…")
        self.position_label = QLabel()
        self.statusBar().addPermanentWidget(self.position_label)
        self.statusBar().addPermanentWidget(self.device_label)

    # --- actions --------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, menu=None, checkable=False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                action.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work whichever child has focus
        if menu is not None:
            menu.addAction(action)
        return action

    def _build_actions(self) -> None:
        """The File, Edit and View menus and their actions (Transport, Generate and Help: _build_menus)."""
        bar = self.menuBar()
        self._build_file_menu(bar)
        self._build_edit_menu(bar)
        self._build_view_menu(bar)

    def _build_file_menu(self, bar) -> None:
        """New, open, open recent, save, save as, the two exports and quit."""
        file_menu = bar.addMenu("&File")
        self.act_new = self._action("&New", self.new_document, QKeySequence.New, file_menu)
        self.act_open = self._action("&Open…", self.open_dialog, QKeySequence.Open, file_menu)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.act_save = self._action("&Save", self.save, QKeySequence.Save, file_menu)
        self.act_save_as = self._action("Save &As…", self.save_as_dialog, QKeySequence.SaveAs, file_menu)
        self.act_export = self._action("&Export with continuation…", self.export_dialog, "Ctrl+E", file_menu)
        self.act_export_audio = self._action("Export &audio…", self.export_audio_dialog, "Ctrl+Shift+E", file_menu)
        self.act_export_audio.setToolTip("Render the piece, with the shown continuation, to a WAV file "
                                         "through the built-in synth")
        file_menu.addSeparator()
        self._action("&Quit", self.close, QKeySequence.Quit, file_menu)

    def _build_edit_menu(self, bar) -> None:
        """Undo and redo (kept off while a continuation streams in), the clipboard, selection, transposing and
        quantizing."""
        edit_menu = bar.addMenu("&Edit")
        edit_menu.setObjectName("edit_menu")
        stack = self.doc.undo_stack
        # own actions (not createUndoAction): undo must wait while a continuation streams in
        self.act_undo = self._action("&Undo", self.undo, QKeySequence.Undo, edit_menu)
        self.act_redo = self._action("&Redo", self.redo, [QKeySequence("Ctrl+Y"), QKeySequence("Ctrl+Shift+Z")],
                                     edit_menu)
        stack.canUndoChanged.connect(lambda ok: self.act_undo.setEnabled(ok and not self.generation.generating))
        stack.canRedoChanged.connect(lambda ok: self.act_redo.setEnabled(ok and not self.generation.generating))
        stack.undoTextChanged.connect(lambda t: self.act_undo.setToolTip(f"Undo {t}"))
        stack.redoTextChanged.connect(lambda t: self.act_redo.setToolTip(f"Redo {t}"))
        self.act_undo.setEnabled(False)
        self.act_redo.setEnabled(False)
        edit_menu.addSeparator()
        self._action("Cu&t", self.cut, QKeySequence.Cut, edit_menu)
        self._action("&Copy", self.copy, QKeySequence.Copy, edit_menu)
        self._action("&Paste at playhead", self.paste, QKeySequence.Paste, edit_menu)
        self._action("&Duplicate", self.duplicate, "Ctrl+D", edit_menu)
        self._action("De&lete", self.delete, [QKeySequence.Delete, QKeySequence("Backspace")], edit_menu)
        self._action("Select &all", self.roll.select_all, QKeySequence.SelectAll, edit_menu)
        self._action("Select &none", lambda: self.roll.scene.set_selection(()), "Escape", edit_menu)
        edit_menu.addSeparator()
        self._action("Transpose up", lambda: self._transpose(1), "Ctrl+Up", edit_menu)
        self._action("Transpose down", lambda: self._transpose(-1), "Ctrl+Down", edit_menu)
        self._action("Octave up", lambda: self._transpose(12), "Ctrl+Shift+Up", edit_menu)
        self._action("Octave down", lambda: self._transpose(-12), "Ctrl+Shift+Down", edit_menu)
        self._action("&Quantize to grid", self.quantize, "Q", edit_menu)

    def _build_view_menu(self, bar) -> None:
        """Zoom, and the Assistant dock's toggle (F9)."""
        view_menu = bar.addMenu("&View")
        self._action("Zoom in", lambda: self.roll.view.set_zoom(self.roll.view.px_per_tick * 1.25),
                     QKeySequence.ZoomIn, view_menu)
        self._action("Zoom out", lambda: self.roll.view.set_zoom(self.roll.view.px_per_tick / 1.25),
                     QKeySequence.ZoomOut, view_menu)
        self._action("Zoom to fit", self.roll.zoom_to_fit, "Ctrl+0", view_menu)
        self.act_assistant = self.panel_dock.toggleViewAction()  # enabled: the dock can be closed (below)
        self.act_assistant.setText("&Assistant")
        self.act_assistant.setShortcut(QKeySequence("F9"))
        view_menu.addAction(self.act_assistant)
        self.view_menu = view_menu

    def _build_toolbars(self) -> None:
        """The transport and edit tools in one row, the model bar in the row under them."""
        self._build_transport_bar()
        # the model and what it writes: a row of their own, under the transport and edit tools
        self._build_model_bar()
        self._build_edit_bar()
        self.addToolBarBreak()
        self.addToolBar(self.model_bar)

    def _build_transport_bar(self) -> None:
        """Start, play, record, loop and metronome, then the tempo and meter."""
        self.transport_bar = QToolBar("Transport")
        self.transport_bar.setObjectName("transport")
        self.addToolBar(self.transport_bar)
        bar = self.transport_bar
        style = self.style()
        self.act_home = self._action("Start", lambda: self.seek(0), "Home")
        self.act_home.setIcon(style.standardIcon(QStyle.SP_MediaSkipBackward))
        self.act_home.setToolTip("Back to the start (Home)")
        self.act_play = self._action("Play", self.toggle_play, "Space", checkable=True)
        self.act_play.setIcon(style.standardIcon(QStyle.SP_MediaPlay))
        self.act_play.setToolTip("Play / stop (Space)")
        self.act_loop = self._action("Loop", self._on_loop_toggled, "L", checkable=True)
        self.act_loop.setToolTip("Loop the region set by dragging in the ruler (L)")
        self.act_record = self._action("Record", self.toggle_record, "R", checkable=True)
        self.act_record.setIcon(style.standardIcon(QStyle.SP_DialogNoButton))
        self.act_record.setToolTip("Record from the MIDI input at the playhead after a bar of count-in; "
                                   "stop with R or Space; Undo removes the take (R)")
        self.act_metronome = self._action("Metronome", self._on_metronome, "M", checkable=True)
        self.act_metronome.setToolTip("Click on every beat while the piece plays, after a one-bar count-in (M)")
        self.act_metronome.setChecked(self.prefs.get("transport/metronome", False, bool))
        self._on_metronome(self.act_metronome.isChecked())
        bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        for a in (self.act_home, self.act_play, self.act_record, self.act_loop, self.act_metronome):
            bar.addAction(a)
        self.tempo_meter = TempoMeterBox()
        self.tempo_meter.tempoEdited.connect(self.set_tempo)
        self.tempo_meter.meterEdited.connect(self.set_meter)
        bar.addWidget(self.tempo_meter)

    def _build_model_bar(self) -> None:
        """The model picker, the style strength and memory sliders, Continue and the infill actions (the bar is
        added to the window by _build_toolbars, after the edit bar)."""
        self.model_bar = QToolBar("Model")
        self.model_bar.setObjectName("model")
        self.model_bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        bar = self.model_bar
        bar.addWidget(QLabel(" Model "))
        self.model_box = QComboBox()
        self.model_box.setMinimumWidth(230)
        self.model_box.setToolTip("Bundled base model, your fine-tuned models and style files")
        self.model_box.activated.connect(self._on_model_chosen)
        bar.addWidget(self.model_box)
        # how strongly a chosen style steers (0% = its base model, 100% = as trained)
        self.strength_label, self.strength = self._percent_slider(
            bar, "Style strength: 0% is the base model, 100% the style as trained", "model/style_strength",
            self._on_strength)
        # how strongly the memory of the piece (and of a style's folder) steers every note (0% = the network)
        self.memory_label, self.memory = self._percent_slider(
            bar, "Memory: how strongly what the piece (and a style's folder) already played steers each note. "
                 "0% is the bare network, 100% as fitted; more recalls motifs more exactly", "model/memory",
            self._on_memory)
        self._on_strength(self.strength.value())
        self._on_memory(self.memory.value())
        self.act_continue = self._action("✦ Continue", lambda: self.generation.start(), "Ctrl+Return")
        self.act_continue.setToolTip("Continue from the playhead or the selection (Ctrl+Return)")
        bar.addAction(self.act_continue)
        self._build_infill_actions(bar)

    def _build_edit_bar(self) -> None:
        """The draw and select tools, snap, undo and redo, drag-out and the keys' zoom."""
        edit_bar = QToolBar("Edit")
        edit_bar.setObjectName("edit")
        self.addToolBar(edit_bar)
        tools = QActionGroup(self)
        self.act_draw = self._action("Draw", lambda: self.roll.set_tool(Tool.DRAW), "D", checkable=True)
        self.act_select = self._action("Select", lambda: self.roll.set_tool(Tool.SELECT), "S", checkable=True)
        for a in (self.act_draw, self.act_select):
            tools.addAction(a)
            edit_bar.addAction(a)
        self.act_draw.setChecked(True)
        self.act_draw.setToolTip("Draw (D): click to add a note, drag to set its length; "
                                 "Shift/Ctrl-drag to box-select")
        self.act_select.setToolTip("Select (S): drag to box-select; Ctrl-drag a note to duplicate it")
        edit_bar.addSeparator()
        edit_bar.addWidget(QLabel(" Snap "))
        self.snap_box = QComboBox()
        for label, ticks in editing.SNAP_CHOICES:
            self.snap_box.addItem(label, ticks)
        self.snap_box.setCurrentIndex(self.prefs.get("edit/snap_index", 2, int))
        self.snap_box.currentIndexChanged.connect(self._on_snap)
        self._on_snap(self.snap_box.currentIndex())
        edit_bar.addWidget(self.snap_box)
        edit_bar.addAction(self.act_undo)
        edit_bar.addAction(self.act_redo)
        edit_bar.addSeparator()
        self.drag_out = DragOutButton(self.doc)
        edit_bar.addWidget(self.drag_out)
        edit_bar.addSeparator()
        edit_bar.addWidget(QLabel(" Keys "))
        edit_bar.addWidget(self.roll.row_zoom)
        self.edit_bar = edit_bar

    def _build_menus(self) -> None:
        """Every command with a key has a menu entry that shows it (not only a tooltip), and Help lists them."""
        bar = self.menuBar()
        transport = bar.addMenu("&Transport")
        for a in (self.act_play, self.act_home, self.act_record, self.act_loop):
            transport.addAction(a)
        generate = bar.addMenu("&Generate")
        for a in (self.act_continue, self.act_regenerate_bars, self.act_add_part, self.act_lock):
            generate.addAction(a)
        edit = self.findChild(QMenu, "edit_menu")
        edit.addSeparator()
        edit.addAction(self.act_draw)
        edit.addAction(self.act_select)
        help_menu = bar.addMenu("&Help")
        self.act_shortcuts = self._action("&Keyboard shortcuts", self.show_shortcuts, QKeySequence.HelpContents,
                                          help_menu)
        self._action("&About RWKV-Music", self._about, menu=help_menu)
        self.menus = [m.menu() for m in bar.actions() if m.menu() is not None]

    def shortcut_rows(self) -> list[tuple[str, str, str]]:
        return shortcut_rows(self.menus)

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self.shortcut_rows(), self).exec()

    def _about(self) -> None:
        QMessageBox.about(self, "About RWKV-Music",
                          "RWKV-Music: a piano roll that continues your music with an RWKV-7 model, "
                          "fine-tunes it on your MIDI folder and jams over MIDI.\n\n"
                          "Help > Keyboard shortcuts lists every key.")

    def _build_infill_actions(self, bar: QToolBar) -> None:
        """Regenerate bars (toolbar, Ctrl+R) and lock notes (Shift+L); with Add part, in the roll's menu."""
        g = self.generation
        self.act_regenerate_bars = self._action("↻ Regenerate bars", g.regenerate_bars, "Ctrl+R")
        self.act_regenerate_bars.setToolTip("Write the bars dragged in the ruler (or of the selected notes) "
                                            "again; locked notes stay (Ctrl+R)")
        self.act_lock = self._action("Lock / unlock notes", g.lock_selection, "Shift+L")
        self.act_add_part = self._action("Add part here", lambda: g.add_part())
        bar.addAction(self.act_regenerate_bars)
        for a in (self.act_regenerate_bars, self.act_add_part):
            a.setEnabled(False)
            g.canContinueChanged.connect(a.setEnabled)
        self.roll.view.context_actions = [self.act_lock, self.act_regenerate_bars, self.act_add_part]

    def _connect(self) -> None:
        roll, t = self.roll, self.transport
        roll.seekRequested.connect(self.seek)
        roll.midiDropped.connect(self.open_file)
        roll.loopChanged.connect(lambda a, b: self._set_loop(a, b, True))
        roll.view.auditionRequested.connect(t.audition)
        roll.keyboard.keyPressed.connect(lambda p: t.audition(p, 100))
        t.positionChanged.connect(self._on_position)
        t.playingChanged.connect(self._on_playing)
        t.error.connect(self._on_transport_error)  # may come from the scheduler's thread: a bound slot is queued
        t.notice.connect(self._on_transport_notice)
        t.portChanged.connect(self._say_advice)  # after the synth's own failure, if it fails
        t.portChanged.connect(lambda name: self.statusBar().showMessage(f"Output: {name or 'none'}", 4000))
        # the synth's device and volume apply whenever it plays, also in place of a port that failed
        t.portChanged.connect(lambda _: self.midi_panel.sound_box.setEnabled(
            t.synth_on or self.midi_panel.chosen_output() == SYNTH))  # chosen but failed: pick another device
        g = self.generation
        g.message.connect(self.show_message)
        self.continue_panel.rejectRequested.connect(self.statusBar().clearMessage)
        g.modelLoaded.connect(lambda device: self.device_label.setText(f"{g.entry.name} · {device}"))
        g.busyChanged.connect(self._on_generating)
        g.canContinueChanged.connect(self.act_continue.setEnabled)
        self.act_continue.setEnabled(False)
        tr = self.training
        tr.message.connect(self.show_message)
        tr.modelsChanged.connect(self.refresh_models)
        tr.runningChanged.connect(lambda _: self.refresh_models())  # the run's entry: "training" / "paused"
        self.jam.message.connect(self.show_message)
        self.recorder.message.connect(self.show_message)
        self.recorder.recordingChanged.connect(self.act_record.setChecked)
        self.midi_panel.systemChosen.connect(self._on_midi_system)
        self.midi_panel.outputChosen.connect(lambda choice: self._open_output(choice, reopen=True))
        self.midi_panel.refreshRequested.connect(self.refresh_ports)
        self.midi_panel.jamToggled.connect(self._on_jam)
        self.midi_panel.clockChosen.connect(self._on_clock_mode)
        self.midi_panel.audioDeviceChosen.connect(lambda _: self._open_output(SYNTH, reopen=True)
                                                  if self.midi_panel.chosen_output() == SYNTH else None)
        self.midi_panel.volumeChanged.connect(t.set_volume)
        t.set_volume(self.midi_panel.chosen_volume())
        self._on_clock_mode(self.midi_panel.clock_mode())
        self.doc.documentReset.connect(self._update_tempo_meter)
        self.doc.metaChanged.connect(self._update_tempo_meter)
        self.roll.playheadMoved.connect(self._update_tempo_meter)
        self.doc.metaChanged.connect(lambda: self._on_position(self.roll.playhead_tick))  # bar.beat moved
        self.doc.documentReset.connect(self._on_document_reset)
        self.tracks_panel.mixChanged.connect(self._on_mix_changed)
        self.tracks_panel.message.connect(self.show_message)

    # --- messages, background start-up ----------------------------------------------------------
    def _on_transport_error(self, text: str) -> None:
        self.show_message(text, "warning")

    def _on_transport_notice(self, text: str) -> None:
        self.show_message(text, "info")

    def _say_advice(self, *_) -> None:
        """The start-up's advice, once the output has settled: the synth starts in the background, and its
        failure (said when it comes) is one of the raw errors the advice stands for."""
        if self._advice and not self.transport.starting:
            self.show_message(self._advice, "warning")
            self._advice = ""

    def show_message(self, text: str, level: str = "error") -> None:
        self.messages.show_message(text, level)
        self.statusBar().showMessage(text, 8000)

    def start_background_loading(self) -> None:
        """After the window is on screen: MIDI ports and the synth, the model list, then the model (torch) in a
        thread."""
        # the remembered system when it works, else what runs here (a JACK server, the ALSA sequencer)
        api, advice = choose_midi_api(self.prefs.midi_api)
        self.midi_panel.set_systems([(key, midi_api_label(key)) for key in midi_apis()], api)
        self.midi_panel.set_audio_devices(audio_devices())
        self.refresh_ports()
        if advice:  # nothing works: say what to do once, instead of each port's raw error
            self._advice = advice
            self._say_advice()
        self.refresh_models()
        # pyqtgraph takes ~0.5 s to import: pay it now, not in the middle of a fine-tune
        self.finetune_panel.curve.ensure_plot()

    def refresh_ports(self) -> None:
        """Refill the port lists. The open output stays as it is unless the choice changed (a DAW's
        connection to the virtual port survives a refresh)."""
        api = self.midi_panel.chosen_system()
        listing = list_ports(api)  # the app's own ports left out: choosing them would loop
        self.midi_panel.set_ports(listing.outputs, listing.inputs, supports_virtual_ports(api), listing.reason)
        self._open_output(self.midi_panel.chosen_output())

    def _open_output(self, choice: str | None, reopen: bool = False) -> None:
        """The built-in synth, or a MIDI output; one that cannot be opened gives way to the synth."""
        if choice in (None, SYNTH):
            self.transport.open_synth(self.midi_panel.chosen_audio_device(), reopen=reopen)
        else:
            self.transport.open_output(None if choice == VIRTUAL else choice, self.midi_panel.chosen_system(),
                                       reopen=reopen, fallback_to_synth=True)

    def _on_midi_system(self, api: str) -> None:
        if self.jam.active:  # its input belongs to the other system
            self.jam.stop()
            self.midi_panel.jam.setChecked(False)
        self.refresh_ports()  # new lists, and the output opened on the new system

    def refresh_models(self) -> None:
        current = self.current_model()
        listed = library.picker_order(library.list_models(self.paths.resources, self.paths.user_data))
        self.models = [m for m, _ in listed]
        self.model_box.clear()
        training = self.training.run_dir if self.training.running else None  # "training", not "paused"
        for m, depth in listed:  # each style under its base model
            self.model_box.addItem(("    ↳ " if depth else "") + m.label_while(training), str(m.path))
        # a fine-tune starts from the bundled base model unless the user picks another in its panel
        bundled = next((str(m.path) for m in self.models if m.kind == "base"), None)
        self.finetune_panel.set_bases([(m.label, str(m.path)) for m in self.models if m.kind != "style"], bundled)
        if not self.models:
            self.model_box.addItem("(no model found)", None)
            self.continue_panel.status.setText(
                f"No model yet: put a base model (.pth) in {self.paths.resources} or fine-tune one.")
            self.device_label.setText("no model")
            return
        wanted = str(current.path) if current else self.prefs.get("model/path", "")
        index = max(0, self.model_box.findData(wanted))
        self.model_box.setCurrentIndex(index)
        if current is None or str(current.path) != self.model_box.itemData(index):
            self._on_model_chosen(index)

    def current_model(self) -> library.ModelEntry | None:
        index = self.model_box.currentIndex()
        return self.models[index] if 0 <= index < len(self.models) else None

    def base_checkpoint(self) -> str | None:
        """The checkpoint under the chosen model: itself, or the model a style file belongs to."""
        entry = self.current_model()
        if entry is None:
            return None
        if entry.kind != "style":
            return str(entry.path)
        if entry.base and entry.base.exists():
            return str(entry.base)
        bases = [m for m in self.models if m.kind == "base"]
        return str(bases[0].path) if bases else None

    def _on_model_chosen(self, index: int) -> None:
        entry = self.current_model()
        if entry is None:
            return
        checkpoint = self.base_checkpoint()
        if checkpoint is None:
            self.show_message(f"The style {entry.name} needs its base model, which is missing.", "error")
            return
        self.prefs.set("model/path", str(entry.path))
        self.device_label.setText(f"loading {entry.name}…")
        self.strength.setEnabled(entry.kind == "style")
        # another style of the loaded base model is applied to it in place; a jam's answers keep theirs
        self.generation.load(entry, checkpoint, self.strength.value() / 100, reuse=not self.jam.active)

    def _percent_slider(self, bar, tooltip: str, pref: str, on_change) -> tuple[QLabel, QSlider]:
        """A labelled 0-150% slider in the toolbar, remembered under `pref` (100% by default)."""
        label, slider = QLabel(), QSlider(Qt.Horizontal)
        slider.setRange(0, 150)
        slider.setSingleStep(5)
        slider.setPageStep(25)
        slider.setFixedWidth(90)
        slider.setToolTip(tooltip)
        slider.setValue(self.prefs.get(pref, 100, int))
        slider.valueChanged.connect(on_change)
        bar.addWidget(label)
        bar.addWidget(slider)
        return label, slider

    def _on_memory(self, value: int) -> None:
        self.memory_label.setText(f" Memory {value}% ")
        self.prefs.set("model/memory", value)
        self.generation.memory = self.jam.memory = value / 100  # read when the next stream starts

    def _on_strength(self, value: int) -> None:
        self.strength_label.setText(f" Style {value}% ")
        self.prefs.set("model/style_strength", value)
        if not getattr(self, "jam", None) or not self.jam.active:  # a jam picks it up when it ends
            self.generation.set_strength(value / 100)

    # --- transport ------------------------------------------------------------------------------
    def toggle_play(self) -> None:
        if self.transport.playing:
            self.transport.stop()
        else:
            score = self.doc.to_score(include_preview=True)
            self.transport.play(score, int(self.roll.playhead_tick), self.tracks_panel.audible(score))

    def toggle_record(self) -> None:
        if self.recorder.recording:
            self.recorder.stop()
            return
        if self.generation.generating:
            self.generation.stop()
        score = self.doc.to_score()
        if not self.recorder.start(score, self.tracks_panel.audible(score), jam_active=self.jam.active):
            self.act_record.setChecked(False)

    def _on_mix_changed(self) -> None:
        """Mute or solo while the piece plays: go on with the new mix, seamlessly where the transport can."""
        if self.transport.playing and not self.generation.generating:
            score = self.doc.to_score(include_preview=True)
            if not self.transport.remix(score, self.tracks_panel.audible(score)):
                self.seek(int(self.transport.position() or self.roll.playhead_tick))

    def seek(self, tick: int) -> None:
        was_playing = self.transport.playing
        self.transport.stop()
        self.roll.set_playhead(tick)
        self.roll.follow_playhead(tick)  # Home at bar 40 shows bar 1
        self._on_position(tick)
        if was_playing:
            self.toggle_play()

    def _set_loop(self, start: int, end: int, enabled: bool) -> None:
        self.roll.set_loop(start, end, enabled)
        self.act_loop.setChecked(enabled)
        self.transport.loop = (start, end) if enabled and end > start else None

    def _on_metronome(self, on: bool) -> None:
        self.transport.metronome = on
        self.prefs.set("transport/metronome", on)

    def _on_loop_toggled(self, checked: bool) -> None:
        start, end = self.roll.loop
        if checked and end <= start:  # no region yet: loop the bar(s) under the playhead
            bar = next(iter(bars_between(self.doc.meta, self.roll.playhead_tick, self.roll.playhead_tick)))
            start, end = bar.tick, bar.tick + 4 * bar.signature.bar_ticks
        self._set_loop(start, end, checked)

    def _on_position(self, tick: float) -> None:
        self.roll.set_playhead(tick)
        if self.transport.playing:
            self.roll.follow_playhead(tick)
        seconds = self.doc.meta.seconds_at(tick)
        self.position_label.setText(f"bar {position_text(self.doc.meta, tick)}   "
                                    f"{int(seconds // 60)}:{seconds % 60:04.1f}")

    def _on_document_reset(self) -> None:
        """Another piece: the ruler region, Loop and the position were the previous piece's."""
        self.transport.stop()
        self._set_loop(0, 0, False)
        self._on_position(0)

    def _on_playing(self, playing: bool) -> None:
        self.act_play.setChecked(playing)
        self.act_play.setText("Stop" if playing else "Play")
        self.act_play.setIcon(self.style().standardIcon(QStyle.SP_MediaStop if playing else QStyle.SP_MediaPlay))

    def _on_generating(self, busy: bool) -> None:
        for a in (self.act_undo, self.act_redo):
            a.setEnabled(not busy and (self.doc.undo_stack.canUndo() if a is self.act_undo
                                       else self.doc.undo_stack.canRedo()))

    def _update_tempo_meter(self, *_) -> None:
        """Tempo and meter in force at the playhead's bar (at 30 Hz while playing: only when they change)."""
        meta, bar = self.doc.meta, bar_start_at(self.doc.meta, self.roll.playhead_tick)
        ts = meta.time_signature_at(bar)
        shown = (meta.tempo_at(bar), ts.numerator, ts.denominator, meta.bar_at(bar) + 1,
                 len(meta.tempos) - 1, len(meta.time_signatures) - 1)
        if shown != getattr(self, "_tempo_meter_shown", None):
            self._tempo_meter_shown = shown
            self.tempo_meter.show_values(*shown)

    def set_tempo(self, bpm: float) -> None:
        """The tempo from the playhead's bar on (undoable; core.score.tempo_from holds the rule)."""
        bar = bar_start_at(self.doc.meta, self.roll.playhead_tick)
        tempos = tempo_from(self.doc.meta, bar, bpm)
        if tempos != self.doc.meta.tempos:
            self.doc.undo_stack.push(commands.SetMeta(self.doc, tempos, self.doc.meta.time_signatures,
                                                      f"Tempo {bpm:g} BPM", merge_key=("tempo", bar)))

    def set_meter(self, numerator: int, denominator: int) -> None:
        """The time signature from the playhead's bar on (undoable; core.score.meter_from holds the rule)."""
        bar = bar_start_at(self.doc.meta, self.roll.playhead_tick)
        meters = meter_from(self.doc.meta, bar, numerator, denominator)
        if meters != self.doc.meta.time_signatures:
            self.doc.undo_stack.push(commands.SetMeta(self.doc, self.doc.meta.tempos, meters,
                                                      f"Time signature {numerator}/{denominator}",
                                                      merge_key=("meter", bar)))

    def _on_clock_mode(self, mode: str) -> None:
        self.transport.send_clock = mode == "send"
        if self.jam.active:  # the jam reads the clock setting when it starts
            self.jam.stop()
            self.midi_panel.jam.setChecked(False)

    def _on_jam(self, on: bool) -> None:
        if on and not self.jam.start(self.generation.generator, self.midi_panel.clock_mode()):
            self.midi_panel.jam.setChecked(False)
        elif not on:
            self.jam.stop()
            self.generation.set_strength(self.strength.value() / 100)  # one changed during the jam

    def _on_snap(self, index: int) -> None:
        self.roll.set_snap(self.snap_box.itemData(index))
        self.prefs.set("edit/snap_index", index)

    # --- editing --------------------------------------------------------------------------
    def undo(self) -> None:
        if not self.generation.generating:
            self.doc.undo_stack.undo()

    def redo(self) -> None:
        if not self.generation.generating:
            self.doc.undo_stack.redo()

    def _transpose(self, semitones: int) -> None:
        editing.transpose(self.doc, self.roll.selected_ids(), semitones)

    def delete(self) -> None:
        editing.delete(self.doc, self.roll.selected_ids())

    def copy(self) -> None:
        self.clipboard = [replace(n) for n in self.doc.notes(self.roll.selected_ids())]
        if self.clipboard:
            self.statusBar().showMessage(f"Copied {len(self.clipboard)} notes", 2000)

    def cut(self) -> None:
        self.copy()
        editing.delete(self.doc, self.roll.selected_ids())

    def paste(self) -> None:
        at = editing.snap_tick(self.doc, self.roll.playhead_tick, self.roll.scene.snap)
        self.roll.scene.set_selection(editing.paste(self.doc, self.clipboard, at))

    def duplicate(self) -> None:
        self.roll.scene.set_selection(editing.duplicate(self.doc, self.roll.selected_ids()))

    def quantize(self) -> None:
        ids = self.roll.selected_ids() or self.doc.ids()
        editing.quantize(self.doc, ids, self.roll.scene.snap)

    # --- files ----------------------------------------------------------------------------
    def _update_title(self, *_) -> None:
        name = Path(self.doc.path).name if self.doc.path else "Untitled"
        dirty = " •" if self.doc.is_modified() else ""
        self.setWindowTitle(f"{name}{dirty} — RWKV-Music")

    def _maybe_discard(self) -> bool:
        """True when it is fine to replace the document (saved, or the user said so)."""
        if not self.doc.is_modified() or not self.confirm_discard:
            return True
        answer = QMessageBox.question(self, "Unsaved changes", "Save changes to the current piece first?",
                                      QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def new_document(self) -> None:
        if self._maybe_discard():
            self.doc.load_score(Score())
            self.roll.view.center_on_pitch(60)
            self.messages.hide()  # what they said was about the previous piece
            self.statusBar().clearMessage()

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open MIDI file", self.prefs.get("files/last_dir", ""),
                                              MIDI_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str) -> bool:
        if not self._maybe_discard():
            return False
        try:
            score, report = read_midi(path)
        except MidiReadError as e:
            self.messages.show_message(f"Could not open {Path(path).name}: {e}", "error")
            return False
        except OSError as e:
            self.messages.show_message(f"Could not open {Path(path).name}: {e.strerror or e}", "error")
            return False
        self.doc.load_score(score, path)
        self.prefs.set("files/last_dir", str(Path(path).parent))
        self._remember_recent(path)
        self.roll.zoom_to_fit()
        n_tracks = len(score.tracks())
        summary = f"Opened {Path(path).name}: {len(score.notes)} notes, {n_tracks} track(s)"
        if report.altered:
            self.messages.show_message(f"{summary}. Some content was changed or dropped (hover for details).",
                                       "warning", str(report))
        else:
            self.messages.hide()
        self.statusBar().showMessage(summary, 5000)
        return True

    def recent_files(self) -> list[str]:
        value = self.prefs.qs.value("files/recent", []) or []  # an ini file gives one path as a string
        return [str(p) for p in ([value] if isinstance(value, str) else value) if p]

    def _remember_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        self.prefs.set("files/recent", ([path] + [p for p in self.recent_files() if p != path])[:RECENT_FILES])

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        for i, path in enumerate(self.recent_files()):
            action = menu.addAction(f"&{i + 1} {Path(path).name}" if i < 9 else Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.open_recent(p))
        if menu.isEmpty():
            menu.addAction("(none yet)").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear the list", lambda: self.prefs.set("files/recent", []))

    def open_recent(self, path: str) -> bool:
        if not Path(path).exists():  # moved or deleted since: say so and drop it from the list
            self.prefs.set("files/recent", [p for p in self.recent_files() if p != path])
            self.show_message(f"{Path(path).name} is no longer at {Path(path).parent}.", "warning")
            return False
        return self.open_file(path)

    def save(self) -> bool:
        if not self.doc.path or not self.doc.path.lower().endswith((".mid", ".midi")):
            return self.save_as_dialog()
        return self.save_to(self.doc.path)

    def save_as_dialog(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save MIDI file", self.doc.path or self.prefs.get(
            "files/last_dir", ""), MIDI_FILTER)
        return bool(path) and self.save_to(path)

    def save_to(self, path: str) -> bool:
        if not path.lower().endswith((".mid", ".midi")):
            path += ".mid"
        if not self._write(self.doc.to_score(), path):
            return False
        self.doc.path = path
        self._remember_recent(path)
        self.doc.undo_stack.setClean()
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export MIDI (piece and shown continuation)",
                                              self.prefs.get("files/last_dir", ""), MIDI_FILTER)
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> bool:
        ok = self._write(self.doc.to_score(include_preview=True), path)
        if ok:
            self.statusBar().showMessage(f"Exported {path}", 4000)
        return ok

    def export_audio_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export audio (piece and shown continuation)",
                                              self.prefs.get("files/last_dir", ""), WAV_FILTER)
        if path:
            self.export_audio_to(path)

    def export_audio_to(self, path: str, sample_rate: int = 44100) -> bool:
        """Render through the built-in synth (core.live.synth: far faster than real time) and write a WAV."""
        if not path.lower().endswith(".wav"):
            path += ".wav"
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            score = self.doc.to_score(include_preview=True)
            write_wav(path, render_score(score, sample_rate=sample_rate), sample_rate)
        except (SynthError, OSError) as e:
            self.messages.show_message(f"Could not export {path}: {getattr(e, 'strerror', None) or e}", "error")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.statusBar().showMessage(f"Exported {path}", 4000)
        return True

    def _write(self, score, path: str) -> bool:
        try:
            write_midi(score, path)
            return True
        except (OSError, ValueError) as e:
            self.messages.show_message(f"Could not save {path}: {getattr(e, 'strerror', None) or e}", "error")
            return False

    # --- drag and drop of .mid files --------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if midi_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = midi_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_file(paths[0])

    # --- shutdown ---------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if not self._maybe_discard():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every thread and every sound before the window goes: cancel, quit, wait."""
        self.jam.stop()
        self.generation.shutdown()
        self.training.shutdown()
        self.transport.shutdown()
        self.prefs.qs.sync()

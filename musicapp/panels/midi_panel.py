"""The MIDI panel: MIDI system, output and input ports, clock, and the Jam toggle. Choices persist
(QSettings)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

VIRTUAL = "__virtual__"
NO_INPUT = ""
CLOCK_MODES = [("Internal (the piece's tempo)", "internal"), ("Send MIDI clock to the output", "send"),
               ("Follow MIDI clock from the input", "follow")]


class MidiPanel(QWidget):
    systemChosen = Signal(str)   # a MIDI system (core.live.MIDI_APIS key)
    outputChosen = Signal(str)   # VIRTUAL or a port name
    inputChosen = Signal(str)    # NO_INPUT or a port name
    clockChosen = Signal(str)
    jamToggled = Signal(bool)
    refreshRequested = Signal()

    def __init__(self, prefs, parent=None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.system = QComboBox()
        self.system.setToolTip("Which MIDI system the ports below belong to. On Linux pick JACK when a JACK "
                               "server runs (a DAW on JACK sees the app's port there), else ALSA.")
        self.output = QComboBox()
        self.input = QComboBox()
        self.clock = QComboBox()
        for label, mode in CLOCK_MODES:
            self.clock.addItem(label, mode)
        self.refresh = QPushButton("Refresh ports")
        self.refresh.clicked.connect(self.refreshRequested)
        self.port_note = QLabel("")
        self.port_note.setWordWrap(True)

        self.jam = QCheckBox("Jam: answer when I pause")
        self.jam.setToolTip("Listen on the MIDI input; when you stop playing, the model answers and its notes "
                            "appear in the roll and play on the output.")
        self.jam_pause = QDoubleSpinBox()
        self.jam_pause.setRange(0.3, 5.0)
        self.jam_pause.setSingleStep(0.1)
        self.jam_pause.setSuffix(" s pause")
        self.jam_pause.setValue(self.prefs.get("jam/pause_s", 1.0, float))
        self.jam_bars = QSpinBox()
        self.jam_bars.setRange(1, 16)
        self.jam_bars.setSuffix(" bars")
        self.jam_bars.setValue(self.prefs.get("jam/bars", 2, int))

        ports = QGroupBox("Ports")
        form = QFormLayout(ports)
        form.addRow("MIDI system", self.system)
        form.addRow("Output", self.output)
        form.addRow("Input", self.input)
        form.addRow("Clock", self.clock)
        form.addRow(self.refresh)
        form.addRow(self.port_note)
        jam_box = QGroupBox("Jam")
        jam_form = QFormLayout(jam_box)
        jam_form.addRow(self.jam)
        jam_form.addRow("Answer after", self.jam_pause)
        jam_form.addRow("Answer length", self.jam_bars)
        layout = QVBoxLayout(self)
        layout.addWidget(ports)
        layout.addWidget(jam_box)
        layout.addStretch(1)

        saved_clock = self.prefs.get("midi/clock", "internal")
        self.clock.setCurrentIndex(max(0, self.clock.findData(saved_clock)))
        self.system.activated.connect(self._on_system)
        self.output.activated.connect(self._on_output)
        self.input.activated.connect(self._on_input)
        self.clock.activated.connect(self._on_clock)
        self.jam.toggled.connect(self.jamToggled)
        self.jam_pause.valueChanged.connect(lambda v: self.prefs.set("jam/pause_s", v))
        self.jam_bars.valueChanged.connect(lambda v: self.prefs.set("jam/bars", v))

    def set_systems(self, systems: list[tuple[str, str]], chosen: str | None) -> None:
        """Offer the MIDI systems ((key, label) pairs) with `chosen` selected (core.live.choose_midi_api:
        the remembered one when it works). The remembered choice stays until the user picks another."""
        self.system.clear()
        for key, label in systems:
            self.system.addItem(label, key)
        self.system.setCurrentIndex(max(0, self.system.findData(chosen)))
        self.system.setEnabled(self.system.count() > 1)

    def chosen_system(self) -> str | None:
        return self.system.currentData()

    def set_ports(self, outputs: list[str], inputs: list[str], virtual_ok: bool, reason: str = "") -> None:
        """Fill the lists and select the remembered choices (or the virtual port / no input)."""
        self.output.clear()
        if virtual_ok:
            self.output.addItem("RWKV-Music (virtual port for your DAW)", VIRTUAL)
        for name in outputs:
            self.output.addItem(name, name)
        self.input.clear()
        self.input.addItem("(none)", NO_INPUT)
        for name in inputs:
            self.input.addItem(name, name)
        out = self.prefs.get("midi/output", VIRTUAL)
        self.output.setCurrentIndex(max(0, self.output.findData(out)))
        inp = self.prefs.get("midi/input", NO_INPUT)
        self.input.setCurrentIndex(max(0, self.input.findData(inp)))
        self.port_note.setText(f"MIDI system: {reason}" if reason else "")

    def chosen_output(self) -> str | None:
        return self.output.currentData()

    def chosen_input(self) -> str:
        return self.input.currentData() or NO_INPUT

    def clock_mode(self) -> str:
        return self.clock.currentData()

    def _on_system(self, index: int) -> None:
        self.prefs.midi_api = self.system.itemData(index)
        self.systemChosen.emit(self.system.itemData(index))

    def _on_output(self, index: int) -> None:
        self.prefs.set("midi/output", self.output.itemData(index))
        self.outputChosen.emit(self.output.itemData(index))

    def _on_input(self, index: int) -> None:
        self.prefs.set("midi/input", self.input.itemData(index))
        self.inputChosen.emit(self.input.itemData(index))

    def _on_clock(self, index: int) -> None:
        self.prefs.set("midi/clock", self.clock.itemData(index))
        self.clockChosen.emit(self.clock.itemData(index))

"""The MIDI panel: MIDI system, output (the built-in synth, the virtual port or a MIDI port) and input ports,
clock, the synth's audio device and volume, and the Jam toggle. Choices persist (QSettings)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel,
                               QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from core.live.synth import SYNTH_OUTPUT

SYNTH = "__synth__"
VIRTUAL = "__virtual__"
DEFAULT_DEVICE = ""
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
    audioDeviceChosen = Signal(str)  # DEFAULT_DEVICE or a device name
    volumeChanged = Signal(float)    # 0..1

    def __init__(self, prefs, parent=None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self._build_port_fields()
        self._build_synth_fields()
        self._build_jam_fields()
        self._lay_out()
        saved_clock = self.prefs.get("midi/clock", "internal")
        self.clock.setCurrentIndex(max(0, self.clock.findData(saved_clock)))
        self._connect_signals()

    def _build_port_fields(self) -> None:
        """The MIDI system, output, input and clock pickers, the refresh button and the ports' note."""
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

    def _build_synth_fields(self) -> None:
        """The built-in synth's audio device and volume (the volume as remembered)."""
        self.audio_device = QComboBox()
        self.audio_device.setToolTip("Where the built-in synth plays")
        self.volume = QSlider(Qt.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setValue(self.prefs.get("audio/volume", 80, int))
        self.volume.setToolTip("The built-in synth's volume")

    def _build_jam_fields(self) -> None:
        """The Jam toggle, the pause it answers after and the length of its answer (as remembered)."""
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

    def _lay_out(self) -> None:
        """The Ports, Built-in synth and Jam groups, one under the other."""
        ports = QGroupBox("Ports")
        form = QFormLayout(ports)
        form.addRow("MIDI system", self.system)
        form.addRow("Output", self.output)
        form.addRow("Input", self.input)
        form.addRow("Clock", self.clock)
        form.addRow(self.refresh)
        form.addRow(self.port_note)
        self.sound_box = QGroupBox("Built-in synth")
        sound_form = QFormLayout(self.sound_box)
        sound_form.addRow("Audio device", self.audio_device)
        sound_form.addRow("Volume", self.volume)
        jam_box = QGroupBox("Jam")
        jam_form = QFormLayout(jam_box)
        jam_form.addRow(self.jam)
        jam_form.addRow("Answer after", self.jam_pause)
        jam_form.addRow("Answer length", self.jam_bars)
        layout = QVBoxLayout(self)
        layout.addWidget(ports)
        layout.addWidget(self.sound_box)
        layout.addWidget(jam_box)
        layout.addStretch(1)

    def _connect_signals(self) -> None:
        """The controls to their handlers and to the panel's signals."""
        self.system.activated.connect(self._on_system)
        self.output.activated.connect(self._on_output)
        self.input.activated.connect(self._on_input)
        self.clock.activated.connect(self._on_clock)
        self.audio_device.activated.connect(self._on_audio_device)
        self.volume.valueChanged.connect(self._on_volume)
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
        """Fill the lists and select the remembered choices (or the built-in synth / no input)."""
        self.output.clear()
        self.output.addItem(SYNTH_OUTPUT, SYNTH)
        if virtual_ok:
            self.output.addItem("RWKV-Music (virtual port for your DAW)", VIRTUAL)
        for name in outputs:
            self.output.addItem(name, name)
        self.input.clear()
        self.input.addItem("(none)", NO_INPUT)
        for name in inputs:
            self.input.addItem(name, name)
        out = self.prefs.get("midi/output", SYNTH)
        index = self.output.findData(out)
        if index < 0 and out not in (SYNTH, VIRTUAL):
            # a port that is not there now stays the choice, to be tried (and, failing, replaced by the synth)
            self.output.addItem(f"{out} (not found)", out)
            index = self.output.count() - 1
        self.output.setCurrentIndex(max(0, index))
        self.sound_box.setEnabled(self.chosen_output() == SYNTH)
        inp = self.prefs.get("midi/input", NO_INPUT)
        self.input.setCurrentIndex(max(0, self.input.findData(inp)))
        self.port_note.setText(f"MIDI system: {reason}" if reason else "")

    def chosen_output(self) -> str | None:
        return self.output.currentData()

    def set_audio_devices(self, devices: list[str]) -> None:
        self.audio_device.clear()
        self.audio_device.addItem("System default", DEFAULT_DEVICE)
        for name in devices:
            self.audio_device.addItem(name, name)
        self.audio_device.setCurrentIndex(max(0, self.audio_device.findData(self.prefs.get("audio/device", ""))))

    def chosen_audio_device(self) -> str | None:
        return self.audio_device.currentData() or None

    def chosen_volume(self) -> float:
        return self.volume.value() / 100

    def _on_audio_device(self, index: int) -> None:
        self.prefs.set("audio/device", self.audio_device.itemData(index))
        self.audioDeviceChosen.emit(self.audio_device.itemData(index))

    def _on_volume(self, value: int) -> None:
        self.prefs.set("audio/volume", value)
        self.volumeChanged.emit(value / 100)

    def chosen_input(self) -> str:
        return self.input.currentData() or NO_INPUT

    def clock_mode(self) -> str:
        return self.clock.currentData()

    def _on_system(self, index: int) -> None:
        self.prefs.midi_api = self.system.itemData(index)
        self.systemChosen.emit(self.system.itemData(index))

    def _on_output(self, index: int) -> None:
        self.prefs.set("midi/output", self.output.itemData(index))
        self.sound_box.setEnabled(self.output.itemData(index) == SYNTH)
        self.outputChosen.emit(self.output.itemData(index))

    def _on_input(self, index: int) -> None:
        self.prefs.set("midi/input", self.input.itemData(index))
        self.inputChosen.emit(self.input.itemData(index))

    def _on_clock(self, index: int) -> None:
        self.prefs.set("midi/clock", self.clock.itemData(index))
        self.clockChosen.emit(self.clock.itemData(index))

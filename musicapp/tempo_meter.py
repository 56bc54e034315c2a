"""Tempo and time signature in the transport bar: they show what is in force at the playhead's bar, and an
edit sets it from that bar on (a change at that bar; at bar 1, the piece's start). The rules (where a change
goes, dropping one that repeats the value before it) are core.score's; edits are undoable commands."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from core.score import METER_DENOMINATORS


class TempoMeterBox(QWidget):
    tempoEdited = Signal(float)
    meterEdited = Signal(int, int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tempo = QDoubleSpinBox()
        self.tempo.setRange(10, 1000)
        self.tempo.setDecimals(1)
        self.tempo.setSingleStep(1)
        self.tempo.setSuffix(" BPM")
        self.tempo.setFixedWidth(95)
        self.tempo.setKeyboardTracking(False)  # one edit when typing ends, not one per digit
        self.numerator = QSpinBox()
        self.numerator.setRange(1, 64)
        self.numerator.setKeyboardTracking(False)
        self.denominator = QComboBox()
        for d in METER_DENOMINATORS[1:5]:  # 2, 4, 8, 16: what notation uses
            self.denominator.addItem(str(d), d)
        self.changes = QLabel("")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        layout.setSpacing(3)
        for w in (self.tempo, self.numerator, QLabel("/"), self.denominator, self.changes):
            layout.addWidget(w)
        self.tempo.valueChanged.connect(self.tempoEdited)
        self.numerator.valueChanged.connect(lambda n: self.meterEdited.emit(n, self.denominator.currentData()))
        self.denominator.activated.connect(
            lambda _: self.meterEdited.emit(self.numerator.value(), self.denominator.currentData()))

    def show_values(self, bpm: float, numerator: int, denominator: int, bar: int, n_tempo: int, n_meter: int) -> None:
        """What is in force at bar `bar` (one-based), and how many changes the piece has after its start."""
        for w in (self.tempo, self.numerator, self.denominator):
            w.blockSignals(True)
        self.tempo.setValue(bpm)
        self.numerator.setValue(numerator)
        index = self.denominator.findData(denominator)
        if index < 0:  # 1/1 or 32nds from a file: offered as they are
            self.denominator.addItem(str(denominator), denominator)
            index = self.denominator.count() - 1
        self.denominator.setCurrentIndex(index)
        for w in (self.tempo, self.numerator, self.denominator):
            w.blockSignals(False)
        where = "from bar 1 (the whole piece up to any change)" if bar == 1 else f"from bar {bar} on"
        self.tempo.setToolTip(f"Tempo {where}: the playhead's bar. Setting a bar back to the tempo before it "
                              f"removes its change. Undo: Ctrl+Z.")
        self.numerator.setToolTip(f"Beats per bar {where}")
        self.denominator.setToolTip(f"Beat value {where}")
        # a star, as on the ruler's marks: the piece changes tempo or meter somewhere (how often: tooltip)
        self.changes.setText("*" if n_tempo + n_meter else "")
        self.changes.setToolTip(f"{n_tempo} tempo change(s) and {n_meter} meter change(s) after the start; "
                                f"the ruler shows where")

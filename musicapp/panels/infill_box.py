"""Regenerate bars and add a part: which bars (the ruler's region or the bars of the selected notes), the
instrument of a new part, and the buttons. Part of the Continue panel, whose sampling settings (temperature,
top-p, variations, seed, allowed instruments) these use too. It only collects settings and shows state."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QRadioButton)

from core.score import GM_PROGRAM_NAMES

RULER, NOTES = "ruler", "notes"
DEFAULT_PART = (33, False)  # Electric Bass (finger): the part most often asked for under a melody


class InfillBox(QGroupBox):
    regenerateBarsRequested = Signal()
    addPartRequested = Signal()
    lockRequested = Signal()

    def __init__(self, prefs=None, parent=None) -> None:
        super().__init__("Regenerate bars · Add a part", parent)
        self.prefs = prefs
        self.from_ruler = QRadioButton("Ruler region")
        self.from_ruler.setToolTip("The bars you dragged over in the ruler")
        self.from_notes = QRadioButton("Selected notes")
        self.from_notes.setToolTip("The bars the selected notes start in")
        self.from_ruler.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.from_ruler)
        group.addButton(self.from_notes)
        source_row = QHBoxLayout()
        source_row.addWidget(self.from_ruler)
        source_row.addWidget(self.from_notes)
        source_row.addStretch(1)
        self.range_note = QLabel("")  # which bars, what regenerating them replaces
        self.range_note.setWordWrap(True)
        self.range_note.setStyleSheet("color: #9aa0aa;")

        self.regenerate_button = QPushButton("Regenerate bars")
        self.regenerate_button.setToolTip("Write these bars again; locked notes and the instruments not "
                                          "allowed stay (Ctrl+R)")
        self.lock_button = QPushButton("Lock / unlock")
        self.lock_button.setToolTip("Lock the selected notes: regenerating their bars keeps them (Shift+L)")
        self.part_instrument = QComboBox()
        self.part_instrument.addItem("Drums", (0, True))
        for program, name in enumerate(GM_PROGRAM_NAMES):
            self.part_instrument.addItem(f"{program + 1}. {name}", (program, False))
        self.part_instrument.setToolTip("The instrument of the new part")
        self.add_part_button = QPushButton("Add part")
        self.add_part_button.setToolTip("A new track of this instrument over these bars (no range chosen: "
                                        "the whole piece), written to go with the others")
        self.regenerate_button.clicked.connect(self.regenerateBarsRequested)
        self.lock_button.clicked.connect(self.lockRequested)
        self.add_part_button.clicked.connect(self.addPartRequested)

        buttons = QHBoxLayout()
        buttons.addWidget(self.regenerate_button, 2)
        buttons.addWidget(self.lock_button, 1)
        part_row = QHBoxLayout()
        part_row.addWidget(self.part_instrument, 1)
        part_row.addWidget(self.add_part_button)
        form = QFormLayout(self)
        form.addRow("Bars", source_row)
        form.addRow(self.range_note)
        form.addRow(buttons)
        form.addRow("Part", part_row)
        self._restore()
        self.from_ruler.toggled.connect(self._save)
        self.part_instrument.currentIndexChanged.connect(self._save)

    def _restore(self) -> None:
        wanted = DEFAULT_PART
        if self.prefs is not None:
            (self.from_notes if self.prefs.get("infill/range", RULER) == NOTES else self.from_ruler).setChecked(True)
            wanted = (self.prefs.get("infill/part_program", DEFAULT_PART[0], int),
                      self.prefs.get("infill/part_drum", DEFAULT_PART[1], bool))
        self.set_part_instrument(*wanted)

    def _save(self, *_) -> None:
        if self.prefs is not None:
            program, drum = self.part()
            self.prefs.set("infill/range", self.range_source())
            self.prefs.set("infill/part_program", program)
            self.prefs.set("infill/part_drum", drum)

    def range_source(self) -> str:
        return NOTES if self.from_notes.isChecked() else RULER

    def part(self) -> tuple[int, bool]:
        return tuple(self.part_instrument.currentData())

    def set_part_instrument(self, program: int, drum: bool = False) -> None:
        wanted = (0, True) if drum else (int(program), False)
        box = self.part_instrument
        index = next((i for i in range(box.count()) if tuple(box.itemData(i)) == wanted), 0)  # findData: no tuples
        box.setCurrentIndex(index)

    def set_state(self, model_ready: bool, generating: bool) -> None:
        self.regenerate_button.setEnabled(model_ready and not generating)
        self.add_part_button.setEnabled(model_ready and not generating)

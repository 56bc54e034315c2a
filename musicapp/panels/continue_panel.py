"""The Continue panel: where to continue from, how much, how adventurous, which instruments, and
what accepting does to the notes after it (insert or replace); then accept, reject, regenerate or pick
among variations. It only collects settings (remembered between runs) and shows state; the main window
runs the generation."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QRadioButton,
                               QSpinBox, QVBoxLayout, QWidget)

from core.arrange import INSERT, REPLACE
from core.sampling_config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from core.score import GM_PROGRAM_NAMES
from musicapp.panels.infill_box import InfillBox

PLACEMENT_CHOICES = [("Insert: push the notes after it back", INSERT),
                     ("Replace the notes in its bars", REPLACE)]


class ContinuePanel(QWidget):
    continueRequested = Signal()
    regenerateRequested = Signal()
    stopRequested = Signal()
    acceptRequested = Signal()
    rejectRequested = Signal()
    variationPicked = Signal(int)

    placementChosen = Signal(str)

    def __init__(self, prefs=None, parent=None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        from_row = self._build_from_row()
        self._build_sampling_fields()
        self._build_placement_fields()
        self._build_instrument_fields()
        settings = self._build_settings_box(from_row)
        inst_box = self._build_instrument_box()
        run_row, result_row, pick_row = self._build_run_rows()
        self.status = QLabel("Loading the model…")
        self.status.setWordWrap(True)
        self.infill = InfillBox(prefs)  # regenerate bars, add a part: the same settings, the same result rows

        layout = QVBoxLayout(self)
        layout.addWidget(settings)
        layout.addWidget(inst_box)
        layout.addWidget(self.infill)
        layout.addLayout(run_row)
        layout.addLayout(pick_row)
        layout.addLayout(result_row)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.set_state(model_ready=False, generating=False, has_preview=False)
        self._restore_settings()
        self._connect_settings()

    def _build_from_row(self) -> QHBoxLayout:
        """Continue from the playhead or from the end of the selection."""
        self.from_playhead = QRadioButton("Playhead")
        self.from_selection = QRadioButton("End of selection")
        self.from_playhead.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.from_playhead)
        group.addButton(self.from_selection)
        from_row = QHBoxLayout()
        from_row.addWidget(self.from_playhead)
        from_row.addWidget(self.from_selection)
        from_row.addStretch(1)
        return from_row

    def _build_sampling_fields(self) -> None:
        """Length, temperature, top-p, the grid, variations and seed."""
        self.bars = QSpinBox()
        self.bars.setRange(1, 64)
        self.bars.setValue(4)
        self.bars.setSuffix(" bars")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setSpecialValueText("0 (always the likeliest)")
        self.temperature.setValue(DEFAULT_TEMPERATURE)
        self.temperature.setToolTip("Lower: safer, more repetitive. Higher: more surprising.")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.1, 1.0)
        self.top_p.setSingleStep(0.01)
        self.top_p.setValue(DEFAULT_TOP_P)
        self.top_p.setToolTip("Sample only from the most likely choices that together hold this probability.")
        self.grid = QCheckBox("Keep to the piece's grid")
        self.grid.setChecked(True)
        self.grid.setToolTip("New notes start only where the notes around them do within the beat (straight "
                             "16ths, triplets, a swing). Off: anywhere. A freely played piece has no grid.")
        self.variations = QSpinBox()
        self.variations.setRange(1, 8)
        self.variations.setValue(2)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2_000_000_000)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("The same seed and settings give the same continuation; 'random' picks a new one.")

    def _build_placement_fields(self) -> None:
        """What Accept does to the notes after the continuation (insert or replace), and its note in words."""
        self.placement = QComboBox()
        for label, mode in PLACEMENT_CHOICES:
            self.placement.addItem(label, mode)
        self.placement.setToolTip("What Accept does with the notes after the continuation's start: move them "
                                  "later by its bars, or replace those that start inside its bars.")
        self.placement_note = QLabel("")  # where the next continuation goes, in words
        self.placement_note.setWordWrap(True)
        self.placement_note.setStyleSheet("color: #9aa0aa;")

    def _build_instrument_fields(self) -> None:
        """The list of allowed instruments and the picker that adds one."""
        self.instruments = QListWidget()
        self.instruments.setMaximumHeight(110)
        self.instruments.setToolTip("Tick the instruments the continuation may use; none ticked: any.")
        self.add_instrument = QComboBox()
        self.add_instrument.addItem("Add instrument…", None)
        self.add_instrument.addItem("Drums", (0, True))
        for program, name in enumerate(GM_PROGRAM_NAMES):
            self.add_instrument.addItem(f"{program + 1}. {name}", (program, False))
        self.add_instrument.activated.connect(self._on_add_instrument)

    def _build_settings_box(self, from_row: QHBoxLayout) -> QGroupBox:
        """The "Continue" group: the settings in a form."""
        form = QFormLayout()
        form.addRow("From", from_row)
        form.addRow("Length", self.bars)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Rhythm", self.grid)
        form.addRow("Variations", self.variations)
        form.addRow("Seed", self.seed)
        form.addRow("On accept", self.placement)
        form.addRow(self.placement_note)
        settings = QGroupBox("Continue")
        settings.setLayout(form)
        return settings

    def _build_instrument_box(self) -> QGroupBox:
        inst_box = QGroupBox("Allowed instruments (none ticked: the piece's own)")
        inst_layout = QVBoxLayout(inst_box)
        inst_layout.addWidget(self.instruments)
        inst_layout.addWidget(self.add_instrument)
        return inst_box

    def _build_run_rows(self) -> tuple[QHBoxLayout, QHBoxLayout, QHBoxLayout]:
        """The buttons, wired to the panel's signals, in rows: (continue/stop, accept/reject/regenerate,
        the variation picker)."""
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Generate from the playhead or the selection (Ctrl+Return)")
        self.continue_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.accept_button = QPushButton("Accept")
        self.reject_button = QPushButton("Reject")
        self.regenerate_button = QPushButton("Regenerate")
        self.variation_box = QComboBox()
        self.continue_button.clicked.connect(self.continueRequested)
        self.regenerate_button.clicked.connect(self.regenerateRequested)
        self.stop_button.clicked.connect(self.stopRequested)
        self.accept_button.clicked.connect(self.acceptRequested)
        self.reject_button.clicked.connect(self.rejectRequested)
        self.variation_box.activated.connect(lambda i: self.variationPicked.emit(self.variation_box.itemData(i)))
        run_row = QHBoxLayout()
        run_row.addWidget(self.continue_button, 2)
        run_row.addWidget(self.stop_button, 1)
        result_row = QHBoxLayout()
        result_row.addWidget(self.accept_button)
        result_row.addWidget(self.reject_button)
        result_row.addWidget(self.regenerate_button)
        pick_row = QHBoxLayout()
        pick_row.addWidget(QLabel("Variation"))
        pick_row.addWidget(self.variation_box, 1)
        return run_row, result_row, pick_row

    def _connect_settings(self) -> None:
        """Announce the placement when it changes, and remember every setting when it changes."""
        self.placement.currentIndexChanged.connect(lambda _: self.placementChosen.emit(self.placement_mode()))
        for signal in (self.from_selection.toggled, self.bars.valueChanged, self.temperature.valueChanged,
                       self.top_p.valueChanged, self.grid.toggled, self.variations.valueChanged,
                       self.seed.valueChanged, self.placement.currentIndexChanged):
            signal.connect(self._save_settings)

    # --- remembered between runs ------------------------------------------------------------
    def _restore_settings(self) -> None:
        if self.prefs is None:
            return
        p = self.prefs
        (self.from_selection if p.get("continue/from", "playhead") == "selection" else self.from_playhead
         ).setChecked(True)
        self.bars.setValue(p.get("continue/bars", self.bars.value(), int))
        self.temperature.setValue(p.get("continue/temperature", self.temperature.value(), float))
        self.top_p.setValue(p.get("continue/top_p", self.top_p.value(), float))
        self.grid.setChecked(p.get("continue/grid", self.grid.isChecked(), bool))
        self.variations.setValue(p.get("continue/variations", self.variations.value(), int))
        self.seed.setValue(p.get("continue/seed", self.seed.value(), int))
        self.placement.setCurrentIndex(max(0, self.placement.findData(p.get("continue/placement", INSERT))))

    def _save_settings(self, *_) -> None:
        if self.prefs is None:
            return
        for key, value in (("from", "selection" if self.from_selection.isChecked() else "playhead"),
                           ("bars", self.bars.value()), ("temperature", self.temperature.value()),
                           ("top_p", self.top_p.value()), ("grid", self.grid.isChecked()),
                           ("variations", self.variations.value()), ("seed", self.seed.value()),
                           ("placement", self.placement_mode())):
            self.prefs.set(f"continue/{key}", value)

    def placement_mode(self) -> str:
        return self.placement.currentData()

    # --- instruments ------------------------------------------------------------------------
    def set_piece_instruments(self, instruments: list[tuple[int, bool]]) -> None:
        """Offer the piece's own instruments (unticked: the model may use any until the user narrows it)."""
        ticked = set(self.allowed_instruments() or ())
        known = {self.instruments.item(i).data(Qt.UserRole) for i in range(self.instruments.count())}
        for inst in instruments:
            if inst not in known:
                self._add_item(inst, inst in ticked)

    def _add_item(self, inst: tuple[int, bool], checked: bool) -> None:
        program, drum = inst
        item = QListWidgetItem("Drums" if drum else f"{program + 1}. {GM_PROGRAM_NAMES[program]}")
        item.setData(Qt.UserRole, inst)
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
        self.instruments.addItem(item)

    def _on_add_instrument(self, index: int) -> None:
        inst = self.add_instrument.itemData(index)
        self.add_instrument.setCurrentIndex(0)
        if inst is not None:
            self.allow_instrument(*inst)

    def allow_instrument(self, program: int, drum: bool = False) -> None:
        """Tick an instrument (adding it to the list if the piece does not use it yet)."""
        inst = (0, True) if drum else (program, False)
        for i in range(self.instruments.count()):
            item = self.instruments.item(i)
            if item.data(Qt.UserRole) == inst:
                item.setCheckState(Qt.Checked)
                return
        self._add_item(inst, True)

    def allowed_instruments(self) -> list[tuple[int, bool]] | None:
        chosen = [self.instruments.item(i).data(Qt.UserRole) for i in range(self.instruments.count())
                  if self.instruments.item(i).checkState() == Qt.Checked]
        return [tuple(c) for c in chosen] or None

    # --- settings and state -----------------------------------------------------------------
    def params(self) -> dict:
        return {"bars": self.bars.value(), "temperature": self.temperature.value(), "top_p": self.top_p.value(),
                "grid": self.grid.isChecked(), "variations": self.variations.value(),
                "seed": self.seed.value() or None,
                "instruments": self.allowed_instruments()}

    def set_variations(self, count: int, current: int) -> None:
        self.variation_box.clear()
        for i in range(count):
            self.variation_box.addItem(f"{i + 1} of {count}", i)
        if count:
            self.variation_box.setCurrentIndex(current)

    def set_state(self, model_ready: bool, generating: bool, has_preview: bool) -> None:
        self.continue_button.setEnabled(model_ready and not generating)
        self.regenerate_button.setEnabled(model_ready and not generating and has_preview)
        self.stop_button.setEnabled(generating)
        self.accept_button.setEnabled(has_preview and not generating)
        self.reject_button.setEnabled(has_preview and not generating)
        self.variation_box.setEnabled(has_preview and not generating and self.variation_box.count() > 1)
        self.infill.set_state(model_ready, generating)

"""Loading the chosen model and streaming continuations, regenerated bars and new parts into the roll and
out of the MIDI port."""
from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QTimer, Signal

from core import arrange, idiom
from core.library import ModelEntry
from core.sampling_config import DEFAULT_MEMORY
from core.score import GM_PROGRAM_NAMES, Track
from musicapp import commands, main_thread_gc
from musicapp.document import NoteDocument, Preview
from musicapp.panels.continue_panel import ContinuePanel
from musicapp.panels.infill_box import NOTES
from musicapp.transport import NoteFeed
from musicapp.workers import GenerationWorker, InfillWorker, ModelLoader, start_thread, stop_thread


@dataclass(frozen=True)
class InfillRequest:
    """Bars [start, end) to regenerate, or to write a new part of `part` = (program, drum) over."""
    start: int
    end: int
    part: tuple[int, bool] | None = None


class GenerationController(QObject):
    modelLoaded = Signal(str)      # device description
    busyChanged = Signal(bool)     # a continuation is streaming
    canContinueChanged = Signal(bool)
    message = Signal(str, str)     # text, level

    def __init__(self, doc: NoteDocument, roll, transport, panel: ContinuePanel, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.roll, self.transport, self.panel = doc, roll, transport, panel
        self.generator = None
        self.entry: ModelEntry | None = None
        self.checkpoint: str | None = None  # the base model file the generator holds
        self.strength = 1.0  # of the chosen style (0 = the base model)
        self.memory = DEFAULT_MEMORY  # how strongly the piece's and the style's folder memory steer (0 = off)
        self.device = ""
        self._loader = self._loader_thread = None
        self._worker = self._worker_thread = None
        self._old_loaders: list = []  # loaders replaced while busy: kept alive until their thread ends
        self.play_while_generating = True
        self._last_request: int | InfillRequest | None = None
        self._replaced = Preview()
        self._orphan = None  # a stream that was running when another piece was opened
        self._ready_text = "Loading the model…"
        doc.set_placement(panel.placement_mode())
        panel.placementChosen.connect(doc.set_placement)
        # the panel says where the next continuation goes; recomputed at most every 100 ms
        self._placement_timer = QTimer(self)
        self._placement_timer.setSingleShot(True)
        self._placement_timer.setInterval(100)
        self._placement_timer.timeout.connect(self.update_placement_note)
        for signal in (doc.notesAdded, doc.notesRemoved, doc.notesChanged, doc.documentReset, doc.metaChanged,
                       doc.previewChanged, roll.playheadMoved, roll.scene.selectionIdsChanged,
                       panel.bars.valueChanged, panel.from_selection.toggled, panel.placementChosen,
                       transport.playingChanged, roll.loopChanged, panel.infill.from_ruler.toggled,
                       doc.lockedChanged):
            signal.connect(self._schedule_placement_note)
        panel.continueRequested.connect(self.start)
        panel.regenerateRequested.connect(self.regenerate)
        panel.stopRequested.connect(self.stop)
        panel.acceptRequested.connect(self.accept)
        panel.rejectRequested.connect(self.reject)
        panel.variationPicked.connect(self.pick)
        panel.infill.regenerateBarsRequested.connect(self.regenerate_bars)
        panel.infill.addPartRequested.connect(self.add_part)
        panel.infill.lockRequested.connect(self.lock_selection)
        doc.previewChanged.connect(self._refresh_panel)
        doc.documentReset.connect(self._on_document_reset)

    @property
    def generating(self) -> bool:
        return self._worker is not None

    # --- model --------------------------------------------------------------------------------
    def load(self, entry: ModelEntry, checkpoint: str, strength: float = 1.0, reuse: bool = True) -> None:
        """Load `checkpoint` (with `entry`'s style file when it is one) in the background. With `reuse`, a
        style (or none) for the model already loaded is applied to it in place: the base is not reloaded."""
        self.strength = strength
        in_place = (reuse and self.generator is not None and not self.generating and self._loader is None
                    and self.checkpoint == checkpoint)
        current = self.generator if in_place else None
        self.generator = None
        if self._loader is not None:  # a torch.load cannot be interrupted: let it end, ignore its result
            self._loader.cancel.set()
            self._old_loaders.append((self._loader, self._loader_thread))
        style = str(entry.path) if entry.kind == "style" else None
        self.entry = entry
        self.panel.status.setText(f"Loading {entry.name}…")
        self._refresh_panel()
        loader = ModelLoader(checkpoint, style, strength, generator=current)
        loader.entry = entry
        # bound methods of this GUI-thread object: Qt queues them to the GUI thread
        loader.loaded.connect(self._on_loaded)
        loader.failed.connect(self._on_load_failed)
        loader.finished.connect(self._on_loader_finished)
        self._loader, self._loader_thread = loader, start_thread(loader, "model-loader")

    def _on_loader_finished(self) -> None:
        loader = self.sender()
        for pair in [p for p in self._old_loaders if p[0] is loader]:
            pair[1].wait()
            self._old_loaders.remove(pair)
        if self._loader is loader:
            self._loader_thread.wait()
            self._loader = self._loader_thread = None

    def _on_loaded(self, generator, device: str) -> None:
        if self.sender() is not self._loader:
            return
        main_thread_gc.settle()  # torch and the model stay: later collections on this thread skip them
        self.generator, self.device = generator, device
        self.checkpoint = self.sender().checkpoint
        self.set_strength(self.strength)  # the slider may have moved while it loaded
        self._ready_text = f"{self.entry.label} ready on {device}."
        self.panel.status.setText(self._ready_text)
        self._refresh_panel()
        self.modelLoaded.emit(device)

    def _on_load_failed(self, msg: str) -> None:
        if self.sender() is not self._loader:
            return
        entry = self.entry
        self.panel.status.setText(f"Could not load {entry.name}.")
        self.message.emit(f"Could not load the model {entry.name}: {msg}", "error")
        self._refresh_panel()

    # --- continuing ---------------------------------------------------------------------------
    def start_tick(self) -> int:
        """Where the continuation starts: the bar line at or after the end of the selection, or after the
        last note before the playhead (core.arrange.continuation_request: after the whole piece when nothing
        is before the playhead). Everything before that bar line is the prompt, so nothing is left between."""
        end = self.roll.selection_end() if self.panel.from_selection.isChecked() else None
        tick = end if end is not None else arrange.continuation_request(self.doc.notes(), self.roll.playhead_tick)
        return arrange.bar_line_at_or_after(self.doc.meta, tick)

    def _schedule_placement_note(self, *_) -> None:
        if not self._placement_timer.isActive():
            self._placement_timer.start()

    def update_placement_note(self) -> None:
        """Say in the panel which bars the continuation fills and what accepting it does to the notes after."""
        self.update_infill_note()
        if self.transport.playing and not self.doc.has_region():
            return  # the playhead runs: say it once it stops
        doc, mode = self.doc, self.doc.placement
        if doc.has_region() and doc.preview.in_place:
            start, end = doc.preview_region()
            part = doc.preview.part
            tail = (f"Accept adds the track {part.label}." if part is not None else
                    f"Accept replaces the {len(doc.placement_plan().removed)} notes it was written for; "
                    f"locked notes and other instruments stay.")
            self.panel.placement_note.setText(f"Shown: bars {self._bar(start)}–{self._bar(end) - 1}. {tail}")
            return
        if not doc.has_region():
            request = self.start_tick()
            start, end = arrange.continuation_bars(doc.meta, request, self.panel.bars.value())
            plan = arrange.place_continuation(dict(doc.items()), doc.meta, start, end, mode)
            playhead = self.roll.playhead_tick
            if self.panel.from_selection.isChecked() and self.roll.selection_end() is not None:
                source = "the selection"
            elif len(doc) and not any(n.start < playhead for n in doc.notes()):
                source = "the end of the piece (no note before the playhead)"
            elif request < playhead:
                source = "the last note before the playhead"
            else:  # where the playhead is, as the status bar's readout says it
                source = f"the playhead (bar {arrange.position_text(doc.meta, playhead)})"
            head = f"Next: bars {self._bar(start)}–{self._bar(end) - 1}, after {source}."
        else:
            start, end = doc.preview_region()
            plan = doc.placement_plan()
            head = f"Shown: bars {self._bar(start)}–{self._bar(end) - 1}."
        if mode == arrange.INSERT:
            tail = (f"Accept moves the {len(plan.moved)} notes after it later." if plan.moved
                    else "Nothing after it to move.")
        else:
            tail = (f"Accept replaces the {len(plan.removed)} notes in its bars." if plan.removed
                    else "No notes in its bars to replace.")
        self.panel.placement_note.setText(f"{head} {tail}")

    def _bar(self, tick: int) -> int:
        return self.doc.meta.bar_at(tick) + 1

    def regenerate(self) -> None:
        """Again what was asked last: from where the shown continuation was asked for (the playhead may
        have moved on), or the same bars, or the same part."""
        request = self._last_request
        if isinstance(request, InfillRequest):
            self.start_infill(request)
        else:
            self.start(request)

    def _ready(self) -> bool:
        if self.generator is None or self.generating:
            if self.generator is None:
                self.message.emit("The model is not loaded yet.", "warning")
            return False
        return True

    def start(self, at_tick: int | None = None) -> None:
        if not self._ready():
            return
        start = self.start_tick() if at_tick is None else at_tick
        self._last_request = start
        self._replaced = self.doc.preview.copy()  # a regenerate's undo brings this back
        prompt = self.doc.to_score()
        params = {**self.panel.params(), "memory": self.memory}
        self.doc.begin_stream(start)
        self.transport.stop()
        feed = NoteFeed() if self.play_while_generating else None
        self._launch(GenerationWorker(self.generator, prompt, start, params, feed, heard_variation=0))

    # --- regenerating bars, adding a part -------------------------------------------------------
    def infill_range(self, whole_piece: bool = False) -> tuple[int, int] | None:
        """The bars to regenerate: the ruler's region or the bars of the selected notes, as the panel says
        (the other one when that one is not there); with `whole_piece`, the whole piece when neither is."""
        doc, roll = self.doc, self.roll
        ruler = arrange.whole_bars(doc.meta, *roll.loop) if roll.loop[1] > roll.loop[0] else None
        notes = arrange.bars_of_notes(doc.meta, doc.notes(roll.selected_ids()))
        chosen = (notes or ruler) if self.panel.infill.range_source() == NOTES else (ruler or notes)
        if chosen is None and whole_piece and len(doc):
            chosen = arrange.whole_bars(doc.meta, 0, doc.end_tick)
        return chosen

    def update_infill_note(self) -> None:
        box, doc = self.panel.infill, self.doc
        bars = self.infill_range()
        locked = len(doc.locked_ids())
        if bars is None:
            text = "Drag over bars in the ruler, or select notes."
        else:
            start, end = bars
            inside = sum(1 for n in doc.notes() if start <= n.start < end)
            text = f"Bars {self._bar(start)}–{self._bar(end) - 1}: {inside} notes"
            text += f", {locked} locked." if locked else "."
        box.range_note.setText(text)

    def regenerate_bars(self) -> None:
        bars = self.infill_range()
        if bars is None:
            self.message.emit("Choose the bars to regenerate first: drag over them in the ruler, or select "
                              "notes in them.", "warning")
            return
        self.start_infill(InfillRequest(*bars))

    def add_part(self, instrument: tuple[int, bool] | None = None) -> None:
        bars = self.infill_range(whole_piece=True)
        if bars is None:
            self.message.emit("The piece is empty: choose the bars of the part in the ruler first.", "warning")
            return
        self.start_infill(InfillRequest(*bars, tuple(instrument or self.panel.infill.part())))

    def lock_selection(self) -> None:
        if commands.toggle_lock(self.doc, self.roll.selected_ids()) is None:
            self.message.emit("Select the notes to lock first: regenerating their bars keeps locked notes.",
                              "warning")

    def start_infill(self, request: InfillRequest) -> None:
        if not self._ready():
            return
        tokenizer = self.generator.tokenizer
        if not tokenizer.infill:  # a model made before infill: say so here, not as a failure later
            self.message.emit(f"{self.entry.name if self.entry else 'This model'} cannot regenerate bars or add "
                              f"a part: it was made with tokenizer {tokenizer.VERSION}, without infill tokens. "
                              f"Choose a model trained with infill (tokenizer rwkvmusic-tok-2).", "warning")
            return
        self._last_request = request
        self._replaced = self.doc.preview.copy()
        doc = self.doc
        piece = doc.to_score()
        params = {**self.panel.params(), "memory": self.memory}
        part = None
        if request.part is not None:
            program, drum = request.part
            part = Track("Drums" if drum else GM_PROGRAM_NAMES[program], None, program, drum)
        doc.begin_stream(request.start, replaced=[] if part is None else None, part=part)
        self.transport.stop()
        feed = NoteFeed() if self.play_while_generating else None
        worker = InfillWorker(self.generator, piece, request.start, request.end, params,
                              {i: replace(n) for i, n in doc.items()}, doc.notes(doc.locked_ids()),
                              request.part, feed)
        worker.replacing.connect(self._on_replacing)
        self._launch(worker)

    def _on_replacing(self, ids: list) -> None:
        worker = self.sender()
        if worker is self._worker and not worker.cancel.is_set() and self.doc.preview.part is None:
            self.doc.preview.replaced = list(ids)
            self.doc.previewChanged.emit()  # the roll dims them

    def _launch(self, worker: GenerationWorker) -> None:
        worker.opened.connect(self._on_opened)
        worker.noteReady.connect(self._on_note)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_generation_failed)
        worker.finished.connect(self._on_finished)
        self._worker, self._worker_thread = worker, start_thread(worker, "generation")
        self.panel.status.setText("Generating…")
        self.panel.set_variations(0, 0)
        self._refresh_panel()
        self.busyChanged.emit(True)

    def _on_note(self, variation: int, note) -> None:
        if self.sender() is not self._orphan:  # notes of a stream begun in the previous piece are dropped
            self.doc.stream_note(variation, note)

    def _on_opened(self, start_tick: int, end_tick: int) -> None:
        """The stream knows the bars it fills (from the bar line at or after the request): show them, and
        play from there."""
        if self.sender() is self._orphan:
            return
        self.doc.set_preview_region(start_tick, None if end_tick < 0 else end_tick)
        worker = self.sender()
        if worker is self._worker and worker.feed is not None:
            self.transport.play_stream(self.doc.to_score(), start_tick, worker.feed)

    def _on_generation_failed(self, msg: str) -> None:
        self.message.emit(f"Generation failed: {msg}", "error")
        self.transport.stop()

    def _on_done(self, count: int, seconds: float) -> None:
        preview = self.doc.preview
        n_var = max(self.panel.params()["variations"], len(preview.variations))
        copied = ""
        if self.generator is not None and preview.variations:
            shares = [self.generator.copy_share(notes, self.doc.to_score()) for notes in preview.variations.values()]
            shares = [s for s in shares if s is not None]
            if shares:  # only with a style's folder memory: how much of it is quoted
                copied = f" Copy meter: {max(shares):.0%} of the new 8-note phrases are in your folder."
        self.panel.status.setText(f"{count} notes in {seconds:.1f} s ({n_var} variation{'s' * (n_var > 1)}).{copied} "
                                  "Accept, reject, regenerate or pick another variation.")

    def set_strength(self, strength: float) -> None:
        """The chosen style's strength: applied now when no stream runs, else when it ends."""
        self.strength = strength
        if self.generator is not None and not self.generating and self.generator.strength != strength:
            self.generator.set_strength(strength)

    def _on_finished(self) -> None:
        thread, worker = self._worker_thread, self._worker
        self._worker = self._worker_thread = None
        if thread is not None:
            thread.wait()
        self.set_strength(self.strength)  # one changed while the stream ran
        preview = self.doc.preview
        if worker is not None and worker.cancel.is_set() and not preview.is_empty():
            # stopped early: the continuation fills only the bars it reached
            last = max(n.start for v in preview.variations.values() for n in v)
            reached = arrange.bar_line_at_or_after(self.doc.meta, last + 1)
            preview.end_tick = reached if preview.end_tick is None else min(preview.end_tick, reached)
            if preview.replaced:  # regenerated bars replace only the notes of the bars they reached
                preview.replaced = [i for i in preview.replaced
                                    if i in self.doc.ids() and self.doc.note(i).start < preview.end_tick]
            self.doc.previewChanged.emit()
        elif preview.is_empty() and preview.end_tick is not None:
            self.doc.set_preview(Preview())  # nothing came: no bars to show
        if preview.part is not None and not preview.is_empty():  # a bass line: each note ends where the next begins
            for notes in preview.variations.values():
                idiom.shape_part(notes, preview.part.instrument)
            self.doc.previewChanged.emit()
        replaced, self._replaced = self._replaced, Preview()
        if not self.doc.preview.is_empty() or not replaced.is_empty():
            text = "Regenerate" if not replaced.is_empty() else (
                "Continue" if not self.doc.preview.in_place else
                "Add part" if self.doc.preview.part is not None else "Regenerate bars")
            self.doc.undo_stack.push(commands.SetPreview(self.doc, replaced, self.doc.preview, text,
                                                         already_applied=True))
        self._refresh_panel()
        self.busyChanged.emit(False)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel.set()
        self.transport.stop()

    # --- result -------------------------------------------------------------------------------
    def accept(self) -> None:
        commands.accept_preview(self.doc)
        self.panel.status.setText(self._ready_text)

    def reject(self) -> None:
        commands.reject_preview(self.doc)
        self.transport.stop()
        self.panel.status.setText(self._ready_text)

    def pick(self, index: int) -> None:
        commands.pick_variation(self.doc, index)
        preview = self.doc.preview
        if preview.notes:  # let the user hear the variation they picked
            self.transport.play(self.doc.to_score(include_preview=True), preview.start_tick)

    def _refresh_panel(self) -> None:
        preview = self.doc.preview
        if not self.generating:
            n = len(preview.variations)
            if self.panel.variation_box.count() != n or (n and self.panel.variation_box.currentIndex() != preview.current):
                self.panel.set_variations(n, preview.current)
        self.panel.set_state(model_ready=self.generator is not None, generating=self.generating,
                             has_preview=not preview.is_empty())
        self.canContinueChanged.emit(self.generator is not None and not self.generating)

    def _on_document_reset(self) -> None:
        self._orphan, self._replaced = self._worker, Preview()  # a stream still ending: not for this piece
        self.stop()
        if self.generator is not None:  # what the panel said was about the previous piece
            self.panel.status.setText(self._ready_text)
        self.panel.set_piece_instruments(sorted({n.instrument for n in self.doc.notes()}))
        self._last_request = None
        self._refresh_panel()  # no variations, no Accept: the continuation went with the previous piece

    def shutdown(self) -> None:
        stop_thread(self._worker, self._worker_thread)
        stop_thread(self._loader, self._loader_thread, timeout_ms=60000)
        for loader, thread in self._old_loaders:
            stop_thread(loader, thread, timeout_ms=60000)

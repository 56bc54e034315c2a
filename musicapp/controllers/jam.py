"""The Jam toggle: core.live's JamSession listens on the chosen MIDI input and answers on the output when
the player pauses; each answer appears in the roll as a continuation at the playhead's bar."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from core import arrange, live
from core.sampling_config import DEFAULT_MEMORY, SamplingConfig
from musicapp import commands
from musicapp.document import NoteDocument, Preview


class JamController(QObject):
    stateChanged = Signal(str)      # listening | answering | off
    answerNote = Signal(object)     # Note, in the jam phrase's ticks
    message = Signal(str, str)

    def __init__(self, doc: NoteDocument, roll, transport, panel, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.roll, self.transport, self.panel = doc, roll, transport, panel
        self.session: live.JamSession | None = None
        self.port = None
        self._anchor = 0         # roll tick where the current answer is shown
        self._answer_start = None
        self._before: Preview | None = None  # what was shown before the answer streaming in (for its undo)
        self.memory = DEFAULT_MEMORY  # the toolbar's Memory, for the answers
        # both arrive from core.live's threads; as signals of this GUI-thread object they are queued to it
        self.stateChanged.connect(self._on_state)
        self.answerNote.connect(self._on_note)
        doc.documentReset.connect(self._forget_answer)

    @property
    def active(self) -> bool:
        return self.session is not None

    def start(self, generator, clock_mode: str) -> bool:
        if self.session is not None:
            return True
        if generator is None:
            self.message.emit("Jam needs a model: wait until it has loaded.", "warning")
            return False
        if self.transport.starting:  # its answers go to the output's scheduler, which the synth does not have yet
            self.message.emit("The built-in synth is still starting: switch Jam on again in a moment.", "warning")
            return False
        input_name = self.panel.chosen_input()
        if not input_name:
            self.message.emit("Jam listens on a MIDI input: choose one in the MIDI panel.", "warning")
            return False
        config = live.JamConfig(bars=self.panel.jam_bars.value(), sampling=SamplingConfig(memory=self.memory),
                                pause_beats=self.panel.jam_pause.value() * self.doc.meta.tempos[0].bpm / 60.0,
                                bpm=self.doc.meta.tempos[0].bpm,
                                meter=(self.doc.meta.time_signatures[0].numerator,
                                       self.doc.meta.time_signatures[0].denominator))
        clock = live.ClockFollower() if clock_mode == "follow" else None
        scheduler = self.transport.ensure_scheduler()
        session = live.JamSession(generator, scheduler, config, clock=clock,
                                  on_state=self.stateChanged.emit, on_note=self.answerNote.emit)
        try:
            self.port = live.open_input(input_name, session.on_message, backend=self.panel.chosen_system())
        except live.PortError as e:
            self.message.emit(f"Jam cannot listen: {e}", "error")
            return False
        self.session = session.start()
        self.stateChanged.emit("listening")
        return True

    def stop(self) -> None:
        session, self.session = self.session, None
        live.close_port(self.port)
        self.port = None
        if session is not None:
            session.close()
        self.stateChanged.emit("off")

    def _on_state(self, state: str) -> None:
        self._finish_answer()  # a new answer, back to listening or off: the last one is complete
        if state == "answering":
            self._answer_start = None
            self._anchor = arrange.bar_start_at(self.doc.meta, self.roll.playhead_tick)
        self.panel.jam.setText({"listening": "Jam: listening…", "answering": "Jam: answering…"}
                               .get(state, "Jam: answer when I pause"))

    def _on_note(self, note) -> None:
        if self.session is None:
            return
        stream = self.session.last_stream
        if self._answer_start is None:
            self._answer_start = stream.start_tick if stream is not None else note.start
            self._before = self.doc.preview.copy()
            self.doc.begin_stream(self._anchor)
        shifted = replace(note, start=self._anchor + note.start - self._answer_start)
        self.doc.stream_note(0, shifted)

    def _finish_answer(self) -> None:
        """An answer that has streamed in becomes a continuation like Continue's: one undo step (before the
        user's notes), with Accept and Reject, still there after Jam is switched off."""
        before, self._before = self._before, None
        if before is None or self.doc.preview.is_empty():
            return
        self.doc.undo_stack.push(commands.SetPreview(self.doc, before, self.doc.preview, "Jam answer",
                                                     already_applied=True))
        self.doc.previewChanged.emit()  # the Continue panel offers Accept / Reject now

    def _forget_answer(self) -> None:
        self._before, self._answer_start = None, None  # another piece: the answer went with the old one

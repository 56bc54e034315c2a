"""Recording from a MIDI keyboard into the roll at the playhead: a bar of count-in clicks, the piece playing
meanwhile, and the take added as one undoable step when the transport stops. The capture and the placing of
the take in the piece's tempo map are core.live's (MidiCapture.notes_in)."""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from core import live
from musicapp import commands
from musicapp.document import NoteDocument

EARLY_BEATS = 0.25  # a note played this much before the first beat starts on it


class RecordController(QObject):
    recordingChanged = Signal(bool)
    message = Signal(str, str)

    def __init__(self, doc: NoteDocument, roll, transport, panel, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.roll, self.transport, self.panel = doc, roll, transport, panel
        self.capture: live.MidiCapture | None = None
        self.port = None
        self.start_tick = 0
        self.origin_time = 0.0  # perf_counter time at which start_tick sounds (after the count-in)
        self._loop = None
        transport.playingChanged.connect(self._on_playing)
        doc.documentReset.connect(self.discard)  # before the window stops the transport: the take is not kept

    @property
    def recording(self) -> bool:
        return self.capture is not None

    def start(self, score, audible=None, jam_active: bool = False) -> bool:
        if self.recording:
            return True
        name = self.panel.chosen_input()
        if jam_active:
            self.message.emit("Jam is listening on the MIDI input: switch Jam off to record.", "warning")
            return False
        if self.transport.starting:  # the count-in and the take's timing need the output playing now
            self.message.emit("The built-in synth is still starting: press Record again in a moment.", "warning")
            return False
        if not name:
            self.message.emit("Recording needs a MIDI input: choose your keyboard in the MIDI tab (Input).",
                              "warning")
            return False
        capture = live.MidiCapture()
        try:
            self.port = live.open_input(name, capture, backend=self.panel.chosen_system())
        except live.PortError as e:
            self.message.emit(f"Cannot record: {e}", "error")
            return False
        meta = self.doc.meta
        self.start_tick = int(round(self.roll.playhead_tick))
        self._loop, self.transport.loop = self.transport.loop, None  # a take runs on: it does not wrap
        beats = meta.time_signature_at(self.start_tick).numerator  # one bar of count-in
        self.origin_time = self.transport.play(score, self.start_tick, audible, count_in=beats, until_stopped=True)
        self.capture = capture
        self.recordingChanged.emit(True)
        return True

    def stop(self) -> None:
        if self.recording:
            self.transport.stop()  # playingChanged(False) ends the take

    def _on_playing(self, playing: bool) -> None:
        if not playing and self.recording:
            self._finish()

    def _finish(self) -> None:
        capture, until = self._close(), time.perf_counter()
        meta = self.doc.meta
        early = EARLY_BEATS * 60.0 / meta.tempo_at(self.start_tick)
        notes = capture.notes_in(meta, self.start_tick, self.origin_time, until=until, early_s=early)
        if notes:
            self.doc.undo_stack.push(commands.AddNotes(self.doc, notes, f"Record {len(notes)} notes"))
            self.message.emit(f"Recorded {len(notes)} notes (Undo removes the take).", "info")
        else:
            self.message.emit("Nothing was recorded: no note came in on the MIDI input.", "warning")

    def discard(self) -> None:
        """Another piece was opened: the take belonged to the previous one."""
        if self.recording:
            self._close()

    def _close(self) -> live.MidiCapture:
        capture, self.capture = self.capture, None
        live.close_port(self.port)
        self.port = None
        self.transport.loop = self._loop
        self.recordingChanged.emit(False)
        return capture

"""The Player: feeds notes (a list or a live generator stream) to a scheduler on a Timeline."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Iterable, Iterator

import mido

from ..channels import ChannelMap
from ..score import Note, Score
from .timing import Timeline

if TYPE_CHECKING:
    from .process import SchedulerProcess
    from .scheduler import Scheduler


class Player:
    """Feeds notes (a list or a live generator stream) to a Scheduler from a thread of its own.

    With no Timeline given, `start_tick` is anchored `lookahead` seconds after the first note arrives,
    so the first note never plays late. A note that arrives after its time (a generator slower than
    real time) slips the timeline forward instead of breaking the rhythm.

    Notes sound on the channels `channels` gives; without one, those of `tempo_map` (the piece: a
    continuation then plays on the channels it will have once written into the piece's file).
    """

    def __init__(self, scheduler: "Scheduler | SchedulerProcess", channels: ChannelMap | None = None):
        self.scheduler = scheduler
        self.channels = channels
        self.timeline: Timeline | None = None
        self.first_note_time: float | None = None  # when the first note-on was scheduled to sound
        self.scheduled: list[tuple[float, Note]] = []  # (note-on time, note) of every note fed so far
        self.releases: list[tuple[float, int]] = []  # (note-off time, channel) of each, in the same order
        self.underruns = 0
        self.cancel = threading.Event()
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def play(self, notes: Iterable[Note], tempo_map: Score, *, start_tick: int = 0,
             timeline: Timeline | None = None, lookahead: float = 0.05) -> "Player":
        self.cancel.clear()
        self.timeline = timeline
        if self.channels is None:
            self.channels = ChannelMap(tempo_map)
        self._thread = threading.Thread(target=self._feed, args=(notes, tempo_map, start_tick, lookahead),
                                        name="midi-player", daemon=True)
        self._thread.start()
        return self

    def _feed(self, notes, tempo_map, start_tick, lookahead) -> None:
        try:
            for note in notes:
                with self._lock:  # stop() cannot slip in between this check and the scheduling
                    if self.cancel.is_set():
                        break
                    self._schedule(note, tempo_map, start_tick, lookahead)
        except Exception as e:
            self.error = e
            self.scheduler.stop()
        finally:
            if isinstance(notes, Iterator) and hasattr(notes, "close"):
                notes.close()  # a generator stream: stop generating

    def _schedule(self, note: Note, tempo_map: Score, start_tick: int, lookahead: float) -> None:
        now = time.perf_counter()
        if self.timeline is None:
            self.timeline = Timeline(tempo_map, start_tick, now + lookahead)
        on = self.timeline.time_at(note.start)
        if on < now:  # late: move the whole timeline so the rhythm holds
            self.underruns += 1
            self.timeline.shift(now + lookahead - on)
            on = self.timeline.time_at(note.start)
        off = self.timeline.time_at(note.end)
        ch, new = self.channels.channel(note)
        if new:
            self.scheduler.send_at(on, mido.Message("program_change", channel=ch, program=note.program))
        self.scheduler.note(ch, note.pitch, note.velocity, on, off)
        self.scheduled.append((on, note))
        self.releases.append((off, ch))
        if self.first_note_time is None:
            self.first_note_time = on

    @property
    def feeding(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Until every note has been fed and played; False on timeout."""
        end = None if timeout is None else time.perf_counter() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        return self.scheduler.wait_idle(None if end is None else max(0.0, end - time.perf_counter()))

    def stop(self, release: bool = True) -> None:
        """Stop feeding and release every sounding note of the scheduler now. Returns at once: a feeder
        busy in the generator ends on its own and schedules nothing more. With `release` False only the
        feeding stops: what it scheduled stays (Transport.remix cuts it itself)."""
        with self._lock:
            self.cancel.set()
        if release:
            self.scheduler.stop()

"""Jam mode: listen to a player, answer when they pause. The only part of core.live that uses the model
(core.generate), and only when it answers: the real-time modules never import the model layer."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import mido

from ..channels import ChannelMap
from ..sampling_config import SamplingConfig
from ..score import DEFAULT_BPM, TICKS_PER_BEAT, Note
from .capture import MidiCapture
from .clock import ClockFollower
from .player import Player
from .timing import Timeline

if TYPE_CHECKING:
    from .process import SchedulerProcess
    from .scheduler import Scheduler


@dataclass
class JamConfig:
    bars: int = 2  # length of each answer
    pause_beats: float = 2.0  # this much silence after the player's last note-off triggers an answer
    trigger_cc: int | None = None  # or this controller (value >= 64) does
    bpm: float = DEFAULT_BPM  # the tempo when no clock is followed
    meter: tuple[int, int] = (4, 4)
    lead: float = 0.05  # seconds between deciding to answer and the earliest bar line the answer may start on
    sampling: SamplingConfig | None = None


class JamSession:
    """Listens to a player and answers when they pause: their phrase, bar-aligned from its first note (or
    to the followed clock's bars), is continued for `bars` bars on the output. Any new note from the
    player stops the answer at once (every sounding note released) and starts a new phrase.

    Feed every input message to `on_message` (it can be the input port's callback).
    """

    def __init__(self, generator, scheduler: "Scheduler | SchedulerProcess", config: JamConfig | None = None,
                 clock: ClockFollower | None = None, on_state: Callable[[str], None] | None = None,
                 on_note: Callable[[Note], None] | None = None):
        self.generator = generator
        self.scheduler = scheduler
        self.config = config or JamConfig()
        self.clock = clock
        self.on_state = on_state  # "listening" / "answering", called from the jam's threads
        self.on_note = on_note  # each answer note (ticks of the phrase's time base) as it is generated
        self.capture = MidiCapture()
        self.channels = ChannelMap()
        self.state = "listening"
        self.answers = 0
        self.answer_started: list[float] = []  # when each answer was triggered (perf_counter)
        self.last_stream = None
        self._player: Player | None = None
        self._phrase_over = False  # the next note begins a new phrase
        self._trigger = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None

    def start(self) -> "JamSession":
        self._thread = threading.Thread(target=self._watch, name="jam", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._trigger.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout=5)

    stop = close

    def __enter__(self) -> "JamSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    @property
    def bpm(self) -> float:
        followed = self.clock.bpm if self.clock is not None else None
        return followed or self.config.bpm

    def on_message(self, msg: mido.Message, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        if msg.type in ("clock", "start", "stop", "continue", "songpos"):
            if self.clock is not None:
                self.clock(msg, t)
            return
        cfg = self.config
        if msg.type == "control_change" and cfg.trigger_cc is not None and msg.control == cfg.trigger_cc:
            if msg.value >= 64:
                self._trigger.set()
            return
        if msg.type == "note_on" and msg.velocity > 0:
            with self._lock:
                if self.state == "answering":
                    self._interrupt()  # the player is back: silence at once
                if self._phrase_over:
                    self.capture.clear()
                    self._phrase_over = False
        self.capture(msg, t)

    def _interrupt(self) -> None:
        with self._lock:
            if self._player is not None:
                self._player.stop()
                self._player = None
                self._phrase_over = True
            if self.state == "answering":
                self._set_state("listening")

    def _watch(self) -> None:
        while not self._closing.is_set():
            triggered = self._trigger.wait(0.005)
            if self._closing.is_set():
                break
            with self._lock:
                if self.state == "answering":
                    if self._player is not None and not self._player.feeding and self.scheduler.idle():
                        self._player = None
                        self._phrase_over = True
                        self._set_state("listening")
                    self._trigger.clear()
                    continue
                last = self.capture.last_event_time()
                paused = (last is not None and not self._phrase_over and self.capture.held == 0
                          and time.perf_counter() - last >= self.config.pause_beats * 60.0 / self.bpm)
                if triggered or paused:
                    self._trigger.clear()
                    if self.capture.first_note_time() is not None:
                        self._answer()

    def _answer(self) -> None:
        """Continue the captured phrase from the next bar line (called with the lock held)."""
        cfg = self.config
        now = time.perf_counter()
        bpm = self.bpm
        bar_beats = cfg.meter[0] * 4 / cfg.meter[1]
        first = self.capture.first_note_time()
        origin = first
        if self.clock is not None and self.clock.running and self.clock.beat_at(first) is not None:
            beat = self.clock.beat_at(first)  # align the phrase to the DAW's bars
            origin = first - (beat % bar_beats) * 60.0 / bpm
        phrase = self.capture.to_score(bpm, origin, until=now, numerator=cfg.meter[0], denominator=cfg.meter[1])
        earliest = int((now + cfg.lead - origin) * bpm / 60.0 * TICKS_PER_BEAT) + 1
        stream = self.generator.stream(phrase, bars=cfg.bars, at_tick=max(earliest, phrase.end_tick),
                                       sampling=cfg.sampling or SamplingConfig())
        self.last_stream = stream

        def notes():
            for item in stream:
                if self.on_note is not None:
                    self.on_note(item.note)
                yield item.note

        self._player = Player(self.scheduler, self.channels).play(
            notes(), phrase, timeline=Timeline(phrase, 0, origin))
        self.answers += 1
        self.answer_started.append(now)
        self._set_state("answering")

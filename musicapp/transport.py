"""Playback through the chosen output, a MIDI port or the built-in synth: play/stop/loop of the piece,
streaming of a continuation as it is generated, and auditioning single keys. Timing lives in core.live
(a scheduler on its own thread, or for the synth in its own process with the audio); this object only
decides what to play and reports the position to the GUI at 30 Hz.
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass, replace

import mido
from PySide6.QtCore import QObject, QTimer, Signal

from core import live
from core.live import metronome
from core.live.synth import SYNTH_OUTPUT, SynthConfig
from core.score import Note, Score

LOOKAHEAD_S = 0.08       # first note this far after pressing play: nothing starts late
LOOP_PREPARE_S = 0.4     # schedule the next loop pass this long before the wrap
AUDITION_S = 0.35
CLICK = ((76, 110), (77, 80))  # count-in on the GM kit: Hi Wood Block on the bar's first beat, Low after


class SilentPort:
    """Stands in for a MIDI output that could not be opened, so the playhead still runs."""
    name = "(no output)"

    def send(self, message) -> None:
        pass

    def close(self) -> None:
        pass


class SynthHandle:
    """Stands in, in this process, for the built-in synth: the child process that runs it owns the real port."""
    name = SYNTH_OUTPUT

    def send(self, message) -> None:
        pass

    def close(self) -> None:
        pass


class NoteFeed:
    """A queue of notes that a core.live.Player pulls from while a generator pushes into it."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._stopped = False

    def put(self, note: Note) -> None:
        if not self._stopped:
            self._queue.put(note)

    def finish(self) -> None:
        self._queue.put(None)

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)

    def __iter__(self):
        while not self._stopped:
            note = self._queue.get()
            if note is None:
                return
            yield note


@dataclass
class _Pass:
    """One scheduled stretch of playback: its timeline and where (in ticks and seconds) it ends."""
    player: live.Player
    start_tick: float
    end_tick: float | None
    end_time: float | None
    open: bool = False  # goes on past its last note until stopped (recording)


class Transport(QObject):
    positionChanged = Signal(float)
    playingChanged = Signal(bool)
    portChanged = Signal(str)
    error = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.port = SilentPort()
        self.port_name = ""
        self.target: tuple[str | None, str | None] | None = None  # (port or None: virtual, MIDI system)
        self._silence_said = False
        self.scheduler: live.Scheduler | live.SchedulerProcess | None = None
        self.volume = 0.8  # the built-in synth's
        self.channels = live.ChannelMap()
        self.loop: tuple[int, int] | None = None
        self.send_clock = False  # MIDI clock (24 per beat, start/stop) to the output while playing
        self.metronome = False   # a click on every beat while the piece plays, after a one-bar count-in
        self._clock: live.ClockSender | None = None
        self.playing = False
        self._tempo_map = Score()
        self._notes: list[Note] = []
        self._current: _Pass | None = None
        self._next: _Pass | None = None
        self._feed: NoteFeed | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._tick)

    # --- ports ------------------------------------------------------------------------------
    def open_output(self, name: str | None, api: str | None = None, reopen: bool = False,
                    fallback_to_synth: bool = False) -> bool:
        """Open `name`, or the app's virtual port when None, on the MIDI system `api` (None: the default).
        On failure play through the built-in synth if `fallback_to_synth`, else silently, and say why. A
        port asked for again stays as it is; `reopen` re-opens a named one (it reconnects a device plugged
        back in), never the virtual port: re-creating that would drop every connection a DAW has made to it."""
        if (name, api) == self.target and not isinstance(self.port, SilentPort) and (name is None or not reopen):
            return True
        self.stop()
        self._close_port()
        self.target, self._silence_said = (name, api), False
        try:
            self.port = live.open_output(name, virtual=None if name is None else False, backend=api)
            self.port_name = getattr(self.port, "name", name or live.APP_PORT_NAME)
            ok = True
        except (live.PortError, OSError, ImportError) as e:
            self.port, self.port_name, ok = SilentPort(), "", False
            failure = self._start_synth(None) if fallback_to_synth else "not tried"
            if failure is None:
                self.error.emit(f"No MIDI output ({e}). Playing through the built-in synth instead; "
                                "choose another output in the MIDI tab.")
                self.portChanged.emit(self.port_name)
                return False
            also = f", and the built-in synth cannot play ({failure})" if fallback_to_synth else ""
            self.error.emit(f"No MIDI output ({e}){also}. Playback is silent; choose another output in the "
                            "MIDI panel.")
        self.scheduler = live.Scheduler(self.port, on_error=lambda e: self.error.emit(f"MIDI output failed: {e}"))
        self.scheduler.start()
        self.channels = live.ChannelMap()
        self.portChanged.emit(self.port_name)
        return ok

    @property
    def synth_on(self) -> bool:
        return isinstance(self.port, SynthHandle)

    def open_synth(self, device: str | None = None, reopen: bool = False) -> bool:
        """Play through the built-in General MIDI synth on the audio `device` (None: the system's default).
        It runs in a child process with its scheduler, where neither the model nor the GUI can delay it.
        On failure play silently and say why."""
        if self.target == (SYNTH_OUTPUT, device) and self.synth_on and not reopen:
            return True
        self.stop()
        self._close_port()
        self.target, self._silence_said = (SYNTH_OUTPUT, device), False
        failure = self._start_synth(device)
        if failure is not None:
            self.error.emit(f"The built-in synth cannot play ({failure}). Playback is silent; choose another "
                            "audio device or a MIDI output in the MIDI tab.")
            self.scheduler = live.Scheduler(self.port).start()
        self.portChanged.emit(self.port_name)
        return failure is None

    def _start_synth(self, device: str | None) -> str | None:
        """Start the synth's process; None, or why it failed."""
        try:
            self.scheduler = live.SchedulerProcess(synth=SynthConfig(device=device, volume=self.volume)).start()
        except (live.PortError, OSError) as e:
            self.scheduler = None
            return str(e)
        self.port, self.port_name = SynthHandle(), SYNTH_OUTPUT
        self.channels = live.ChannelMap()
        return None

    def set_volume(self, volume: float) -> None:
        """The built-in synth's volume, 0..1 (remembered for the next time it opens)."""
        self.volume = volume
        if self.synth_on and isinstance(self.scheduler, live.SchedulerProcess):
            self.scheduler.set_volume(volume)

    def ensure_scheduler(self) -> live.Scheduler:
        if self.scheduler is None:
            self.scheduler = live.Scheduler(self.port).start()
        return self.scheduler

    def _close_port(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        live.close_port(self.port)
        self.port = SilentPort()

    def _say_if_silent(self) -> None:
        """Once per port choice: playing with no output open is silent, and the user should know how to fix it."""
        if isinstance(self.port, SilentPort) and not self._silence_said:
            self._silence_said = True
            self.error.emit("Playback is silent: no output is open. Choose an output in the MIDI tab "
                            "(Ports > Output): the built-in synth, a MIDI port, or the app's virtual port "
                            "connected to your DAW or synth.")

    # --- playback ---------------------------------------------------------------------------
    def play(self, score: Score, start_tick: int, audible: Score | None = None, count_in: int = 0,
             until_stopped: bool = False) -> float:
        """Play `score` from `start_tick`, or only the notes of `audible` (the piece without its muted tracks)
        on the channels `score` gives them, so that a track keeps its channel whatever else is muted.
        `count_in` beats of clicks come first; `until_stopped` goes on past the last note (recording).
        Returns the perf_counter time at which `start_tick` sounds."""
        self.stop()
        self._say_if_silent()
        self._tempo_map = Score([], list(score.tempos), list(score.time_signatures))
        notes = list((score if audible is None else audible).notes)
        self.channels.use(score)  # the channels and programs the piece's file has
        if self.loop and not self.loop[0] <= start_tick < self.loop[1]:
            start_tick = self.loop[0]
        end = self.loop[1] if self.loop else None
        at = time.perf_counter() + LOOKAHEAD_S
        if self.metronome:
            last = end if end is not None else max((n.end for n in notes), default=start_tick)
            notes += metronome.clicks(self._tempo_map, 0, max(last, start_tick + 1))
        self._notes = sorted(notes, key=lambda n: n.start)
        if count_in:  # a recording's own count-in, in beats
            at = self._count_in(start_tick, count_in, at)
        elif self.metronome:  # the piece starts after one bar of clicks
            beats, length = metronome.count_in(self._tempo_map, start_tick)
            at += length
            for before, click in beats:
                self._sound(click, at - before, 0.1)
        self._current = self._schedule(start_tick, end, at)
        self._current.open = until_stopped
        if self.send_clock and not isinstance(self.port, (SilentPort, SynthHandle)):
            self._clock = live.ClockSender(self.port, bpm=self._tempo_map.tempo_at(start_tick)).start(at=at)
        self._set_playing(True)
        return at

    def _count_in(self, start_tick: int, beats: int, at: float) -> float:
        """Clicks on the beats before `at`, in the tempo and beat value at `start_tick`; returns when they end."""
        beat_s = 60.0 / self._tempo_map.tempo_at(start_tick) * 4 / self._tempo_map.time_signature_at(
            start_tick).denominator
        scheduler = self.ensure_scheduler()
        for k in range(beats):
            pitch, velocity = CLICK[0] if k == 0 else CLICK[1]
            scheduler.note(9, pitch, velocity, at + k * beat_s, at + k * beat_s + min(0.1, beat_s / 2))
        return at + beats * beat_s

    def _schedule(self, start: float, end: float | None, at: float) -> _Pass:
        notes = [n for n in self._notes if n.start >= start and (end is None or n.start < end)]
        if end is not None:  # a note crossing the loop end is cut there, so the pass ends clean
            notes = [replace(n, duration=min(n.duration, int(end) - n.start)) for n in notes]
        timeline = live.Timeline(self._tempo_map, start, at)
        player = live.Player(self.ensure_scheduler(), self.channels)
        player.play(notes, self._tempo_map, start_tick=int(start), timeline=timeline)
        last = end if end is not None else max((n.end for n in notes), default=start)
        return _Pass(player, start, last, timeline.time_at(last))

    def play_stream(self, piece: Score, start_tick: int, feed: NoteFeed) -> NoteFeed:
        """Play notes as a generator produces them (feed.put() from any thread, then feed.finish()) in the
        tempo of `piece`, on the channels they will have once saved into it. `start_tick` is anchored just
        after the first note arrives, so nothing plays late."""
        self.stop()
        self._say_if_silent()
        self._tempo_map = Score([], list(piece.tempos), list(piece.time_signatures))
        self.channels.use(piece)
        self._feed = feed
        player = live.Player(self.ensure_scheduler(), self.channels)
        player.play(feed, self._tempo_map, start_tick=start_tick, lookahead=0.15)
        self._current = _Pass(player, start_tick, None, None)
        self._set_playing(True)
        return feed

    def stop(self) -> None:
        """Stop everything and release every sounding note."""
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        for p in (self._current, self._next):
            if p is not None:
                p.player.stop()
        self._current = self._next = None
        if self._clock is not None:
            self._clock.stop()
            self._clock = None
        if self.scheduler is not None:
            self.scheduler.stop()
        self._set_playing(False)

    def audition(self, pitch: int, velocity: int = 90, program: int = 0, drum: bool = False) -> None:
        """Let the user hear one key (keyboard click, drawing a note)."""
        self._say_if_silent()
        self._sound(Note(0, 1, pitch, velocity, program, drum), time.perf_counter())

    def _sound(self, note: Note, at: float, seconds: float = AUDITION_S) -> None:
        """One note at a perf_counter time, outside any pass (a key clicked, a count-in's click)."""
        scheduler = self.ensure_scheduler()
        channel, new = self.channels.channel(note)
        if new:
            scheduler.send_at(at, mido.Message("program_change", channel=channel, program=note.program))
        scheduler.note(channel, note.pitch, note.velocity, at, at + seconds)

    def position(self) -> float | None:
        p = self._current
        if p is None or p.player.timeline is None:
            return None
        return max(p.start_tick, p.player.timeline.tick_at(time.perf_counter()))

    def _set_playing(self, playing: bool) -> None:
        if playing != self.playing:
            self.playing = playing
            (self._timer.start if playing else self._timer.stop)()
            self.playingChanged.emit(playing)

    def _tick(self) -> None:
        now = time.perf_counter()
        p = self._current
        if p is None:
            return self._set_playing(False)
        if self.loop and p.end_time is not None:
            if self._next is None and now >= p.end_time - LOOP_PREPARE_S:
                self._next = self._schedule(self.loop[0], self.loop[1], p.end_time)
            if now >= p.end_time and self._next is not None:
                self._current, self._next = self._next, None
                p = self._current
        elif p.end_time is not None and now > p.end_time + 0.05 and not p.open:
            self.positionChanged.emit(float(p.end_tick))
            return self.stop()
        elif p.end_time is None and not p.player.feeding and self.scheduler is not None and self.scheduler.idle():
            pos = self.position()
            self.stop()  # the stream has ended and its last note has sounded
            if pos is not None:
                self.positionChanged.emit(pos)
            return
        pos = self.position()
        if pos is not None:
            self.positionChanged.emit(pos)

    def shutdown(self) -> None:
        self.stop()
        self._close_port()

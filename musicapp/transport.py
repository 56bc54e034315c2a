"""Playback through the chosen output, a MIDI port or the built-in synth: play/stop/loop of the piece,
streaming of a continuation as it is generated, and auditioning single keys. Timing lives in core.live
(a scheduler on its own thread, or for the synth in its own process with the audio); this object only
decides what to play and reports the position to the GUI at 30 Hz.

The synth's process takes about 0.6 s to answer (a fresh interpreter, the engine, the audio device): it is
started on a thread of its own, never waited for on the GUI thread. Until it answers the output is
"starting": Play waits for it (playing, silent, the playhead at rest) and sounds once it is ready; a key
clicked meanwhile is not heard, and the user is told why once.
"""
from __future__ import annotations

import queue
import threading
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


class SynthStarting(SynthHandle):
    """The built-in synth while its process starts: nothing can sound yet."""
    name = f"{SYNTH_OUTPUT} (starting…)"


STARTING_NOTICE = "The built-in synth is starting: playback begins as soon as it is ready (a moment)."
START_JOIN_S = 10.0  # shutdown waits this long at most for a cancelled start's thread (it ends in milliseconds)


class _SynthStart:
    """One start of the synth's process on a thread of its own (SchedulerProcess.start() waits for the
    child's answer). `done(start, process or None, why it failed)` reaches the GUI thread as a queued signal.
    `ready_text` is said once it plays; `failed_text(why)` when it cannot."""

    def __init__(self, config: SynthConfig, done, ready_text: str, failed_text) -> None:
        self.process = live.SchedulerProcess(synth=config)
        self.ready_text, self.failed_text = ready_text, failed_text
        self._done = done
        self.thread = threading.Thread(target=self._run, name="synth-start", daemon=True)

    def _run(self) -> None:
        try:
            self.process.start()
        except (live.PortError, OSError) as e:
            self._done.emit(self, None, str(e))
            return
        self._done.emit(self, self.process, "")

    def cancel(self) -> None:
        """At once, from the GUI thread: a child that has not answered is ended (it has sounded nothing)."""
        self.process.cancel()


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
    end_tick: float | None  # None: a stream, which ends with its feed
    open: bool = False  # goes on past its last note until stopped (recording)

    @property
    def end_time(self) -> float | None:
        # read from the timeline each time: a player fed late moves it on (Player._schedule), and the next
        # loop pass must start where this one really ends, not over its last notes
        if self.end_tick is None or self.player.timeline is None:
            return None
        return self.player.timeline.time_at(self.end_tick)


class Transport(QObject):
    positionChanged = Signal(float)
    playingChanged = Signal(bool)
    portChanged = Signal(str)
    error = Signal(str)
    notice = Signal(str)  # something to know, not a failure ("the synth is starting")
    _synthDone = Signal(object, object, str)  # from a start's thread: queued to the GUI thread

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
        self._starting: _SynthStart | None = None  # the synth's process, until it answers
        self._queued = None  # what Play asked for while the synth started: run once it is ready
        self._notice_said = False
        self._synthDone.connect(self._on_synth_done)
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
            self.port, self.port_name, ok, why = SilentPort(), "", False, str(e)
            if fallback_to_synth:  # said at once, and again once the synth answers, either way
                self.error.emit(f"No MIDI output ({why}). Starting the built-in synth instead…")
                self._start_synth(None, f"No MIDI output ({why}). Playing through the built-in synth instead; "
                                  "choose another output in the MIDI tab.",
                                  lambda failure: f"No MIDI output ({why}), and the built-in synth cannot play "
                                                  f"({failure}). Playback is silent; choose another output in "
                                                  "the MIDI panel.")
                return False
            self.error.emit(f"No MIDI output ({why}). Playback is silent; choose another output in the MIDI panel.")
        self.scheduler = live.Scheduler(self.port, on_error=lambda e: self.error.emit(f"MIDI output failed: {e}"))
        self.scheduler.start()
        self.channels = live.ChannelMap()
        self.portChanged.emit(self.port_name)
        return ok

    @property
    def synth_on(self) -> bool:
        """The built-in synth is the output and ready to sound."""
        return isinstance(self.port, SynthHandle) and not self.starting

    @property
    def starting(self) -> bool:
        """The built-in synth's process is starting: nothing sounds until it answers."""
        return self._starting is not None

    def open_synth(self, device: str | None = None, reopen: bool = False) -> None:
        """Play through the built-in General MIDI synth on the audio `device` (None: the system's default).
        It runs in a child process with its scheduler, where neither the model nor the GUI can delay it.
        Returns at once: portChanged says the synth is starting, then that it is ready; on failure playback
        is silent and `error` says why."""
        if self.target == (SYNTH_OUTPUT, device) and isinstance(self.port, SynthHandle) and not reopen:
            return
        self.stop()
        self._close_port()
        self.target, self._silence_said = (SYNTH_OUTPUT, device), False
        self._start_synth(device, "", lambda failure: f"The built-in synth cannot play ({failure}). Playback is "
                                                      "silent; choose another audio device or a MIDI output in "
                                                      "the MIDI tab.")

    def _start_synth(self, device: str | None, ready_text: str, failed_text) -> None:
        """Start the synth's process on a thread of its own; _on_synth_done takes the result."""
        self.port, self.port_name = SynthStarting(), SynthStarting.name
        self._starting = _SynthStart(SynthConfig(device=device, volume=self.volume), self._synthDone,
                                     ready_text, failed_text)
        self._notice_said = False
        self._starting.thread.start()
        self.portChanged.emit(self.port_name)

    def _on_synth_done(self, start: _SynthStart, process, failure: str) -> None:
        """On the GUI thread, once a start has ended: the synth plays, or playback is silent and the user
        reads why; either way what Play asked for meanwhile starts now. A start cancelled meanwhile is
        ended here."""
        if start is not self._starting:  # another output was chosen meanwhile, or the app is closing
            if process is not None:
                process.close()
            return
        self._starting, queued, self._queued = None, self._queued, None
        if self.scheduler is not None:  # one made meanwhile (ensure_scheduler), on no real output
            self.scheduler.close()
        self.channels = live.ChannelMap()
        if process is None:  # silent, as any output that failed: the playhead still runs
            self.port, self.port_name = SilentPort(), ""
            self.scheduler = live.Scheduler(self.port).start()
            self._silence_said = True  # said now, with the reason
            self.error.emit(start.failed_text(failure))
        else:
            self.scheduler = process
            process.set_volume(self.volume)  # it may have moved meanwhile
            self.port, self.port_name = SynthHandle(), SYNTH_OUTPUT
            if start.ready_text:
                self.error.emit(start.ready_text)
        self.portChanged.emit(self.port_name)
        if queued is not None:
            queued()

    def _cancel_start(self, wait: bool = False) -> None:
        """Give up a start in flight: its child is ended at once; `wait` (at shutdown) also waits for its
        thread and ends a child that answered just before, so no process outlives the app."""
        start, self._starting, self._queued = self._starting, None, None
        if start is None:
            return
        start.cancel()
        if wait:
            start.thread.join(START_JOIN_S)
            start.process.close()  # nothing left when it was cancelled in time; else released and ended

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
        self._cancel_start()
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        live.close_port(self.port)
        self.port = SilentPort()

    def _wait_for_synth(self, request) -> bool:
        """While the synth starts: keep `request` (the latest Play) for when it is ready and say so once.
        False when the output is ready and the caller goes on now."""
        if not self.starting:
            return False
        self._say_starting()
        if request is not None:
            self._queued = request
            self._set_playing(True)  # Stop cancels it; the playhead rests until the synth sounds
        return True

    def _say_starting(self) -> None:
        if not self._notice_said:
            self._notice_said = True
            self.notice.emit(STARTING_NOTICE)

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
        Returns the perf_counter time at which `start_tick` sounds; None while the synth starts: it plays
        once the synth is ready (a recording's count-in needs that time now: it asks `starting` first)."""
        self.stop()
        if self._wait_for_synth(lambda: self._play(score, start_tick, audible, count_in, until_stopped)):
            return None
        return self._play(score, start_tick, audible, count_in, until_stopped)

    def _play(self, score: Score, start_tick: int, audible: Score | None, count_in: int,
              until_stopped: bool) -> float:
        self._say_if_silent()
        self._tempo_map = Score([], list(score.tempos), list(score.time_signatures))
        self.channels.use(score)  # the channels and programs the piece's file has
        if self.loop and not self.loop[0] <= start_tick < self.loop[1]:
            start_tick = self.loop[0]
        end = self.loop[1] if self.loop else None
        at = time.perf_counter() + LOOKAHEAD_S
        self._notes = self._what_plays(score, audible, start_tick, end)
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

    def _what_plays(self, score: Score, audible: Score | None, start_tick: float, end: float | None) -> list[Note]:
        notes = list((score if audible is None else audible).notes)
        if self.metronome:
            last = end if end is not None else max((n.end for n in notes), default=start_tick)
            notes += metronome.clicks(self._tempo_map, 0, max(last, int(start_tick) + 1))
        return sorted(notes, key=lambda n: n.start)

    def remix(self, score: Score, audible: Score | None) -> bool:
        """Mute or solo while it plays: from LOOKAHEAD_S on only the notes of `audible` start, in time, and
        the muted tracks are silent at once; notes that go on sounding are not cut or struck again. Unlike a
        restart, no note due meanwhile is lost or doubled. False when this playback cannot (a stream, a
        count-in, the synth starting): the caller restarts it instead."""
        p = self._current
        if p is None or p.end_tick is None or self.scheduler is None or self.starting:
            return False
        passes = [q for q in (p, self._next) if q is not None]
        for q in passes:  # under the player's lock: once this returns nothing more is fed
            q.player.stop(release=False)
        now = time.perf_counter()
        at = now + LOOKAHEAD_S
        if p.player.timeline is None or at < p.player.timeline.time_at(p.start_tick):
            for q in passes:  # still counting in (its clicks lie outside the pass): restart
                q.player.stop()
            self._current = self._next = None
            return False
        self.channels.use(score)
        self._notes = self._what_plays(score, audible, p.start_tick, p.end_tick if self.loop else None)
        kept = {(n.start, n.pitch, n.instrument) for n in self._notes}
        timeline = p.player.timeline
        keep, silence, held = set(), set(), timeline.tick_at(now)
        for q in passes:
            for (on, n), (off, ch) in zip(q.player.scheduled, q.player.releases):
                if off > now and on < at:  # sounding now, or starting before the new mix does
                    if (n.start, n.pitch, n.instrument) in kept:
                        keep.add((ch, n.pitch))
                        held = max(held, n.end) if q is p else held
                    else:
                        silence.add((ch, n.pitch))
        self.scheduler.cut(at, silence - keep)  # a key both kept and muted sounds as one: it stays
        self._current = self._schedule(p.start_tick, p.end_tick if self.loop else None, timeline.origin_time,
                                       timeline=timeline, not_before=at)
        self._current.open = p.open
        if not self.loop:  # it ends with its last note, as a Play of this mix would
            self._current.end_tick = max(self._current.end_tick, held)
        self._next = None
        if len(passes) == 2:  # the next loop pass was scheduled: again, in the new mix
            self._next = self._schedule(self.loop[0], self.loop[1], p.end_time, not_before=at)
        return True

    def _count_in(self, start_tick: int, beats: int, at: float) -> float:
        """Clicks on the beats before `at`, in the tempo and beat value at `start_tick`; returns when they end."""
        beat_s = 60.0 / self._tempo_map.tempo_at(start_tick) * 4 / self._tempo_map.time_signature_at(
            start_tick).denominator
        scheduler = self.ensure_scheduler()
        for k in range(beats):
            pitch, velocity = CLICK[0] if k == 0 else CLICK[1]
            scheduler.note(9, pitch, velocity, at + k * beat_s, at + k * beat_s + min(0.1, beat_s / 2))
        return at + beats * beat_s

    def _schedule(self, start: float, end: float | None, at: float, timeline: live.Timeline | None = None,
                  not_before: float | None = None) -> _Pass:
        """A pass from `start` (sounding at `at`) to `end`; with `not_before`, only its notes from that time on."""
        notes = [n for n in self._notes if n.start >= start and (end is None or n.start < end)]
        if end is not None:  # a note crossing the loop end is cut there, so the pass ends clean
            notes = [replace(n, duration=min(n.duration, int(end) - n.start)) for n in notes]
        timeline = timeline or live.Timeline(self._tempo_map, start, at)
        if not_before is not None:
            notes = [n for n in notes if timeline.time_at(n.start) >= not_before]
        player = live.Player(self.ensure_scheduler(), self.channels)
        player.play(notes, self._tempo_map, start_tick=int(start), timeline=timeline)
        last = end if end is not None else max((n.end for n in notes), default=start)
        return _Pass(player, start, last)

    def play_stream(self, piece: Score, start_tick: int, feed: NoteFeed) -> NoteFeed:
        """Play notes as a generator produces them (feed.put() from any thread, then feed.finish()) in the
        tempo of `piece`, on the channels they will have once saved into it. `start_tick` is anchored just
        after the first note arrives, so nothing plays late. While the synth starts the notes wait in `feed`."""
        self.stop()
        self._feed = feed  # Stop stops it, also while it waits
        if not self._wait_for_synth(lambda: self._play_stream(piece, start_tick, feed)):
            self._play_stream(piece, start_tick, feed)
        return feed

    def _play_stream(self, piece: Score, start_tick: int, feed: NoteFeed) -> None:
        self._say_if_silent()
        self._tempo_map = Score([], list(piece.tempos), list(piece.time_signatures))
        self.channels.use(piece)
        player = live.Player(self.ensure_scheduler(), self.channels)
        player.play(feed, self._tempo_map, start_tick=start_tick, lookahead=0.15)
        self._current = _Pass(player, start_tick, None)
        self._set_playing(True)

    def stop(self) -> None:
        """Stop everything and release every sounding note (and forget a Play waiting for the synth)."""
        self._queued = None
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
        """Let the user hear one key (keyboard click, drawing a note); not while the synth starts."""
        if self._wait_for_synth(None):
            return
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
            if self._queued is None:  # else a Play waits for the synth
                self._set_playing(False)
            return
        if self.loop and p.end_time is not None:
            # not while its player still feeds: a late note would still move the end this pass is anchored at
            if self._next is None and now >= p.end_time - LOOP_PREPARE_S and not p.player.feeding:
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
        self._cancel_start(wait=True)
        self._close_port()

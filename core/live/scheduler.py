"""Real-time MIDI: ports, a scheduler on absolute deadlines, input capture, clock sync and jam mode.

Time in here is `time.perf_counter()` seconds; music is Score ticks, mapped to seconds through the
Score's tempo map by a Timeline. Everything that sends runs on the Scheduler's thread, which tracks
every sounding note so that stop, seek, error and exit always release them (a note never hangs).
SchedulerProcess runs that thread in a child process, out of reach of this process's GIL (the
generator, the GUI); a Player feeds either from a stream of notes.
"""
from __future__ import annotations

import atexit
import heapq
import itertools
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import mido

from .score import DRUM_CHANNEL, TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature

APP_PORT_NAME = "RWKV-Music"
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"
SPIN_SECONDS = 0.001  # sleep until this close to a deadline, then spin: sub-millisecond accuracy


# --- ports -------------------------------------------------------------------------------------
class PortError(RuntimeError):
    """A MIDI port could not be listed or opened; the message says why."""


# the MIDI systems rtmidi can talk to: our short name -> (rtmidi API name, what the user reads)
MIDI_APIS = {
    "alsa": ("LINUX_ALSA", "ALSA"),
    "jack": ("UNIX_JACK", "JACK"),
    "coremidi": ("MACOSX_CORE", "CoreMIDI"),
    "winmm": ("WINDOWS_MM", "Windows MIDI (WinMM)"),
}
_RTMIDI = "mido.backends.rtmidi"
_OWN_PORT = re.compile(rf"^{re.escape(APP_PORT_NAME)}(-\d+)?(:|$)")  # JACK renames a second client X-01


def midi_apis() -> list[str]:
    """The MIDI systems this machine's rtmidi has compiled in, by short name, in rtmidi's order (the
    platform's own system first: CoreMIDI, ALSA, then JACK, WinMM); [] without rtmidi."""
    try:
        compiled = mido.Backend(_RTMIDI, load=True).module.get_api_names()
    except (ImportError, OSError, AttributeError):
        return []
    by_api = {api: key for key, (api, _) in MIDI_APIS.items()}
    return [by_api[api] for api in compiled if api in by_api]


def midi_api_label(key: str) -> str:
    return MIDI_APIS[key][1] if key in MIDI_APIS else key


def default_midi_api() -> str | None:
    """The system used when none is chosen: the one MIDO_BACKEND names, else rtmidi's first (ALSA on Linux)."""
    env = os.environ.get("MIDO_BACKEND", "")
    if env:
        module, _, api = env.partition("/")
        return next((k for k, (a, _) in MIDI_APIS.items() if module == _RTMIDI and a == api), None)
    apis = midi_apis()
    return apis[0] if apis else None


def midi_backend(name: str | None = None) -> mido.Backend:
    """The mido backend to use: a MIDI system by short name ("alsa", "jack", "coremidi", "winmm"), a full
    mido backend string, or None for MIDO_BACKEND / the default. Raises PortError for a system this
    machine does not have (rtmidi would otherwise fail later with a less helpful message)."""
    if name in MIDI_APIS:
        if name not in midi_apis():
            have = ", ".join(midi_apis()) or "none"
            raise PortError(f"the MIDI system {midi_api_label(name)} is not available here (available: {have})")
        name = f"{_RTMIDI}/{MIDI_APIS[name][0]}"
    return mido.Backend(name or os.environ.get("MIDO_BACKEND") or _RTMIDI, load=True)


def _api_of(backend: mido.Backend) -> str | None:
    api = getattr(backend, "api", None)
    return next((k for k, (a, _) in MIDI_APIS.items() if a == api), None) if api else default_midi_api()


def is_own_port(name: str) -> bool:
    """A port of this app's own MIDI client: offering it back to the app would make a feedback loop."""
    return bool(_OWN_PORT.match(name))


@dataclass
class PortListing:
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    reason: str = ""  # why a list is empty where the MIDI system could not be reached


def list_ports(backend: mido.Backend | str | None = None) -> PortListing:
    """Inputs and outputs, without the app's own ports; never raises (rtmidi raises SystemError where no
    MIDI system exists, e.g. JACK with no server running)."""
    listing, reasons = PortListing(), []
    try:
        be = backend if isinstance(backend, mido.Backend) else midi_backend(backend)
    except PortError as e:
        return PortListing(reason=str(e))
    except (ImportError, OSError, ValueError) as e:
        return PortListing(reason=f"no MIDI backend: {e}")
    for attr, getter in (("inputs", be.get_input_names), ("outputs", be.get_output_names)):
        try:
            setattr(listing, attr, [n for n in getter() if not is_own_port(n)])
        except (OSError, RuntimeError, ValueError) as e:  # rtmidi.SystemError is an OSError
            reasons.append(str(e))
    listing.reason = "; ".join(dict.fromkeys(reasons))
    return listing


def supports_virtual_ports(api: str | None = None) -> bool:
    """WinMM has none (use loopMIDI or a hardware port); ALSA, JACK and CoreMIDI do."""
    if api is None:
        api = default_midi_api()
    return api != "winmm" if api is not None else not sys.platform.startswith("win")


def open_output(name: str | None = None, *, virtual: bool | None = None,
                backend: mido.Backend | str | None = None):
    """An output port: `name` if given; else a virtual port named after the app where the platform has
    them; else the first existing output. Raises PortError with the reason."""
    be = backend if isinstance(backend, mido.Backend) else midi_backend(backend)
    try:
        if name is not None and not virtual:
            return be.open_output(name)
        if virtual is not False and supports_virtual_ports(_api_of(be)):
            try:
                return be.open_output(name or APP_PORT_NAME, client_name=APP_PORT_NAME)
            except OSError:
                if virtual:
                    raise
        outputs = be.get_output_names()
        if not outputs:
            raise PortError("no MIDI output available")
        return be.open_output(outputs[0])
    except PortError:
        raise
    except (OSError, RuntimeError) as e:
        raise PortError(f"cannot open MIDI output {name or APP_PORT_NAME!r}: {e}") from e


def open_input(name: str | None, callback: Callable[[mido.Message], None], *, virtual: bool = False,
               backend: mido.Backend | str | None = None):
    """An input port delivering each message to `callback` on rtmidi's thread (None: first input)."""
    be = backend if isinstance(backend, mido.Backend) else midi_backend(backend)
    try:
        if virtual:
            return be.open_input(name or "in", client_name=APP_PORT_NAME, callback=callback)
        if name is None:
            inputs = be.get_input_names()
            if not inputs:
                raise PortError("no MIDI input available")
            name = inputs[0]
        return be.open_input(name, callback=callback)
    except PortError:
        raise
    except (OSError, RuntimeError) as e:
        raise PortError(f"cannot open MIDI input {name!r}: {e}") from e


# --- timing ------------------------------------------------------------------------------------
def sleep_until(deadline: float, interrupt: threading.Event | None = None, spin: float = SPIN_SECONDS) -> bool:
    """Wait for a perf_counter deadline: sleep, then spin the last `spin` seconds. False if interrupted."""
    remaining = deadline - time.perf_counter()
    if remaining > spin:
        if interrupt is not None:
            if interrupt.wait(remaining - spin):
                return False
        else:
            time.sleep(remaining - spin)
    while time.perf_counter() < deadline:
        pass
    return not (interrupt is not None and interrupt.is_set())


def raise_thread_priority(priority: int = 5) -> bool:
    """Best effort: real-time (FIFO) scheduling for the calling thread where the OS allows it
    (Linux with CAP_SYS_NICE or an rtprio limit); a loaded machine then delays its deadlines far less."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # pid 0: this thread only
        return True
    except (AttributeError, OSError):
        return False


class Timeline:
    """Maps Score ticks to perf_counter seconds through a Score's tempo map: `origin_tick` at `origin_time`."""

    def __init__(self, tempo_map: Score, origin_tick: float, origin_time: float):
        self.tempo_map = tempo_map
        self.origin_tick = origin_tick
        self.origin_time = origin_time
        self._origin_seconds = tempo_map.seconds_at(origin_tick)

    def time_at(self, tick: float) -> float:
        return self.origin_time + self.tempo_map.seconds_at(tick) - self._origin_seconds

    def tick_at(self, t: float) -> float:
        return self.tempo_map.tick_at(t - self.origin_time + self._origin_seconds)

    def shift(self, seconds: float) -> None:
        self.origin_time += seconds


# --- channels ----------------------------------------------------------------------------------
class ChannelMap:
    """Gives each instrument a MIDI channel: drums on channel 10, programs on the other 15 in order."""

    MELODIC = [c for c in range(16) if c != DRUM_CHANNEL]

    def __init__(self):
        self._by_instrument: dict[tuple[int, bool], int] = {}

    def channel(self, note: Note) -> tuple[int, bool]:
        """(channel, is_new): is_new when the channel needs its program change first."""
        key = note.instrument
        if key in self._by_instrument:
            return self._by_instrument[key], False
        if note.drum:
            ch = DRUM_CHANNEL
        else:
            melodic = sum(1 for (_, d) in self._by_instrument if not d)
            ch = self.MELODIC[melodic % len(self.MELODIC)]  # beyond 15 programs channels are shared
        self._by_instrument[key] = ch
        return ch, not note.drum


# --- scheduler ---------------------------------------------------------------------------------
_PRIORITY_OFF, _PRIORITY_SETUP, _PRIORITY_ON = 0, 1, 2  # at equal deadlines: releases, programs, notes


@dataclass(order=True)
class _Event:
    deadline: float
    priority: int
    seq: int
    message: mido.Message = field(compare=False)
    note_id: int = field(compare=False, default=-1)


class Scheduler:
    """Sends timed MIDI messages on `port` from its own thread, each at an absolute perf_counter deadline.

    Thread-safe: any thread may schedule; stop() drops what is pending and releases every sounding note
    (note-offs, then CC64=0 and CC123 on every used channel). `lateness` keeps send time minus deadline.
    """

    def __init__(self, port, *, spin: float = SPIN_SECONDS, on_error: Callable[[Exception], None] | None = None,
                 history: int = 100_000):
        self.port = port
        self.spin = spin
        self.on_error = on_error
        self.lateness: deque[float] = deque(maxlen=history)
        self.sent: deque[tuple[float, mido.Message]] = deque(maxlen=history)
        self.error: Exception | None = None
        self.realtime = False  # whether the thread got real-time scheduling
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._note_ids = itertools.count()
        self._sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> id of the note holding it
        self._used_channels: set[int] = set()
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "Scheduler":
        # Threads of this process hand the GIL over every 1 ms at most (not 5): our MIDI callbacks and this
        # thread then wait at most that long for it while the generator computes.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        with self._cond:
            if self._running:
                return self
            self._running = True
        self._thread = threading.Thread(target=self._run, name="midi-scheduler", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # an interpreter exit without close() still releases every note
        return self

    def close(self) -> None:
        """Release everything and end the thread (the port stays open: its owner closes it)."""
        atexit.unregister(self.close)
        with self._cond:
            self._running = False
            self._heap.clear()
            self._release_all_locked()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def __enter__(self) -> "Scheduler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- scheduling
    def send_at(self, deadline: float, message: mido.Message) -> None:
        priority = _PRIORITY_SETUP if message.type in ("program_change", "control_change") else _PRIORITY_ON
        self._push(_Event(deadline, priority, next(self._seq), message))

    def note(self, channel: int, pitch: int, velocity: int, on_time: float, off_time: float) -> None:
        """One note: its note-on and note-off, bound by an id so a later note on the same key wins."""
        nid = next(self._note_ids)
        with self._cond:
            self._push_locked(_Event(on_time, _PRIORITY_ON, next(self._seq),
                                     mido.Message("note_on", channel=channel, note=pitch, velocity=velocity), nid))
            self._push_locked(_Event(max(off_time, on_time), _PRIORITY_OFF, next(self._seq),
                                     mido.Message("note_off", channel=channel, note=pitch, velocity=0), nid))

    def stop(self) -> None:
        """Drop every pending event and release every sounding note now."""
        with self._cond:
            self._heap.clear()
            self._release_all_locked()
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    @property
    def sounding(self) -> int:
        with self._cond:
            return len(self._sounding)

    def idle(self) -> bool:
        with self._cond:
            return not self._heap and not self._sounding

    def wait_idle(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.perf_counter() + timeout
        while not self.idle():
            if end is not None and time.perf_counter() > end:
                return False
            time.sleep(0.002)
        return True

    # -- internals
    def _push(self, ev: _Event) -> None:
        with self._cond:
            self._push_locked(ev)

    def _push_locked(self, ev: _Event) -> None:
        heapq.heappush(self._heap, ev)
        if self._heap[0] is ev:
            self._cond.notify_all()  # an earlier deadline than the one the thread sleeps towards

    def _run(self) -> None:
        self.realtime = raise_thread_priority()
        with self._cond:
            while self._running:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline = self._heap[0].deadline
                remaining = deadline - time.perf_counter()
                if remaining > self.spin:
                    self._cond.wait(remaining - self.spin)  # woken early by stop or an earlier event
                    continue
                while time.perf_counter() < deadline:  # spin the last stretch, holding the lock: nothing jumps in
                    pass
                try:
                    self._send_due_locked()
                except Exception as e:  # a broken port: release what we can, report, keep the thread alive
                    self.error = e
                    self._heap.clear()
                    try:
                        self._release_all_locked()
                    except Exception:
                        pass
                    if self.on_error is not None:
                        self.on_error(e)

    def _send_due_locked(self) -> None:
        now = time.perf_counter()
        while self._heap and self._heap[0].deadline <= now:
            ev = heapq.heappop(self._heap)
            msg = ev.message
            key = (msg.channel, msg.note) if msg.type in ("note_on", "note_off") else None
            if msg.type == "note_off" and ev.note_id >= 0:
                if self._sounding.get(key) != ev.note_id:
                    continue  # a newer note took this key over (or stop released it)
                del self._sounding[key]
            elif msg.type == "note_on" and ev.note_id >= 0:
                if key in self._sounding:  # same key still held: end it so the new one restarts cleanly
                    self._send(mido.Message("note_off", channel=msg.channel, note=msg.note, velocity=0), ev.deadline)
                self._sounding[key] = ev.note_id
            self._send(msg, ev.deadline)

    def _send(self, msg: mido.Message, deadline: float) -> None:
        self.port.send(msg)
        t = time.perf_counter()
        self.lateness.append(t - deadline)
        self.sent.append((t, msg))
        if hasattr(msg, "channel"):
            self._used_channels.add(msg.channel)

    def _release_all_locked(self) -> None:
        now = time.perf_counter()
        for (ch, pitch) in sorted(self._sounding):
            self._send(mido.Message("note_off", channel=ch, note=pitch, velocity=0), now)
        self._sounding.clear()
        for ch in sorted(self._used_channels):
            self._send(mido.Message("control_change", channel=ch, control=64, value=0), now)  # pedal up
            self._send(mido.Message("control_change", channel=ch, control=123, value=0), now)  # all notes off
        self._used_channels.clear()


class SchedulerProcess:
    """The Scheduler in a child process that owns the MIDI output, so nothing this process does (the
    generator's Python, the GUI, a garbage collection) can hold up a note: they share no GIL. If this
    process dies, the child sees its pipe close and releases every sounding note before it exits.

    Same methods as Scheduler; deadlines are this process's time.perf_counter() values, which the child
    shares (a system-wide monotonic clock). stop() is asynchronous: the child releases on receipt.
    """

    def __init__(self, port_name: str | None = None, *, virtual: bool | None = None, backend: str | None = None):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_scheduler_process_main, args=(child_end, port_name, virtual, backend),
                                    name="midi-scheduler", daemon=True)
        self._child_end = child_end
        self._lock = threading.Lock()  # one request and its reply at a time
        self.port_name = ""

    def start(self, timeout: float = 30.0) -> "SchedulerProcess":
        self._process.start()
        self._child_end.close()
        if not self._conn.poll(timeout):
            self._process.kill()
            raise PortError("the MIDI scheduler process did not start")
        try:
            kind, detail = self._conn.recv()
        except EOFError:
            kind, detail = "error", f"the MIDI scheduler process ended (exit code {self._process.exitcode})"
        if kind == "error":
            self._process.join(5)
            raise PortError(detail)
        self.port_name = detail
        return self

    def _post(self, *command) -> None:
        with self._lock:
            self._conn.send(command)

    def _ask(self, *command):
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def send_at(self, deadline: float, message: mido.Message) -> None:
        self._post("at", deadline, bytes(message.bytes()))

    def note(self, channel: int, pitch: int, velocity: int, on_time: float, off_time: float) -> None:
        self._post("note", channel, pitch, velocity, on_time, off_time)

    def stop(self) -> None:
        self._post("stop")

    @property
    def pending(self) -> int:
        return self._ask("status")[0]

    @property
    def sounding(self) -> int:
        return self._ask("status")[1]

    @property
    def lateness(self) -> list[float]:
        return self._ask("lateness")

    def idle(self) -> bool:
        pending, sounding = self._ask("status")
        return pending == 0 and sounding == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.perf_counter() + timeout
        while not self.idle():
            if end is not None and time.perf_counter() > end:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        """Release everything, close the port and end the child."""
        if self._process.is_alive():
            try:
                self._post("close")
            except (OSError, EOFError):
                pass
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        self._conn.close()

    def __enter__(self) -> "SchedulerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _scheduler_process_main(conn, port_name, virtual, backend) -> None:
    """The child of SchedulerProcess: open the port, then obey the pipe until "close" or until it breaks."""
    raise_thread_priority(4)  # this thread takes the GIL too: unpreempted, it never makes the scheduler wait
    try:
        port = open_output(port_name, virtual=virtual, backend=backend)
    except Exception as e:
        conn.send(("error", str(e)))
        return
    scheduler = Scheduler(port).start()
    conn.send(("ready", getattr(port, "name", port_name or APP_PORT_NAME)))
    try:
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone: release everything below
            op = command[0]
            if op == "note":
                scheduler.note(*command[1:])
            elif op == "at":
                scheduler.send_at(command[1], mido.Message.from_bytes(command[2]))
            elif op == "stop":
                scheduler.stop()
            elif op == "status":
                conn.send((scheduler.pending, scheduler.sounding))
            elif op == "lateness":
                conn.send(list(scheduler.lateness))
            elif op == "close":
                break
    finally:
        scheduler.close()
        port.close()


# --- playing notes -----------------------------------------------------------------------------
class Player:
    """Feeds notes (a list or a live generator stream) to a Scheduler from a thread of its own.

    With no Timeline given, `start_tick` is anchored `lookahead` seconds after the first note arrives,
    so the first note never plays late. A note that arrives after its time (a generator slower than
    real time) slips the timeline forward instead of breaking the rhythm.
    """

    def __init__(self, scheduler: "Scheduler | SchedulerProcess", channels: ChannelMap | None = None):
        self.scheduler = scheduler
        self.channels = channels or ChannelMap()
        self.timeline: Timeline | None = None
        self.first_note_time: float | None = None  # when the first note-on was scheduled to sound
        self.scheduled: list[tuple[float, Note]] = []  # (note-on time, note) of every note fed so far
        self.underruns = 0
        self.cancel = threading.Event()
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def play(self, notes: Iterable[Note], tempo_map: Score, *, start_tick: int = 0,
             timeline: Timeline | None = None, lookahead: float = 0.05) -> "Player":
        self.cancel.clear()
        self.timeline = timeline
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

    def stop(self) -> None:
        """Stop feeding and release every sounding note of the scheduler now. Returns at once: a feeder
        busy in the generator ends on its own and schedules nothing more."""
        with self._lock:
            self.cancel.set()
        self.scheduler.stop()


# --- input capture -----------------------------------------------------------------------------
class MidiCapture:
    """Records incoming notes with arrival times (perf_counter taken in the callback: mido has none)."""

    def __init__(self):
        self.events: list[tuple[float, mido.Message]] = []
        self._held: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def __call__(self, msg: mido.Message, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        if msg.type not in ("note_on", "note_off", "program_change", "control_change"):
            return
        with self._lock:
            self.events.append((t, msg))
            if msg.type == "note_on" and msg.velocity > 0:
                self._held.add((msg.channel, msg.note))
            elif msg.type in ("note_on", "note_off"):
                self._held.discard((msg.channel, msg.note))

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self._held.clear()

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def first_note_time(self) -> float | None:
        with self._lock:
            return next((t for t, m in self.events if m.type == "note_on" and m.velocity > 0), None)

    def last_event_time(self) -> float | None:
        with self._lock:
            return next((t for t, m in reversed(self.events) if m.type in ("note_on", "note_off")), None)

    def to_score(self, bpm: float, origin_time: float | None = None, *, until: float | None = None,
                 numerator: int = 4, denominator: int = 4) -> Score:
        """The captured notes in ticks at `bpm` from `origin_time` (default: the first note).

        Note-ons pair with the next note-off (or velocity-0 note-on) on the same channel and key;
        notes still held end at `until` (default: now). Channel 10 is drums.
        """
        with self._lock:
            events = list(self.events)
        if origin_time is None:
            origin_time = next((t for t, m in events if m.type == "note_on" and m.velocity > 0), 0.0)
        until = time.perf_counter() if until is None else until
        ticks_per_second = bpm / 60.0 * TICKS_PER_BEAT

        def tick(t: float) -> int:
            return round((t - origin_time) * ticks_per_second)

        programs = [0] * 16
        open_notes: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # key -> [(start, velocity, program)]
        notes: list[Note] = []

        def close(key, end_tick):
            start, velocity, program = open_notes[key].pop(0)
            if not open_notes[key]:
                del open_notes[key]
            if start >= 0:  # notes begun before the origin are dropped
                notes.append(Note(start, max(1, end_tick - start), key[1], velocity, program,
                                  drum=key[0] == DRUM_CHANNEL))

        for t, m in events:
            if m.type == "program_change":
                programs[m.channel] = m.program
            elif m.type == "note_on" and m.velocity > 0:
                open_notes.setdefault((m.channel, m.note), []).append((tick(t), m.velocity, programs[m.channel]))
            elif m.type in ("note_on", "note_off") and (m.channel, m.note) in open_notes:
                close((m.channel, m.note), tick(t))
        for key in list(open_notes):
            while key in open_notes:
                close(key, tick(until))
        return Score(notes, [TempoChange(0, bpm)], [TimeSignature(0, numerator, denominator)])


# --- clock sync --------------------------------------------------------------------------------
CLOCKS_PER_BEAT = 24


class ClockFollower:
    """Follows a DAW's MIDI clock: tempo by a least-squares line through the last `window` clock ticks
    (single intervals jitter by a JACK period), transport state and song position."""

    def __init__(self, window: int = 48):
        self.window = window
        self.running = False
        self._times: deque[float] = deque(maxlen=window)
        self._position = 0  # clock ticks since song position 0
        self._last_time: float | None = None
        self._lock = threading.Lock()

    def __call__(self, msg: mido.Message, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        with self._lock:
            if msg.type == "clock":
                if self.running:
                    if self._last_time is not None:
                        self._position += 1
                    self._last_time = t
                self._times.append(t)
            elif msg.type == "start":
                self.running, self._position, self._last_time = True, 0, None
                self._times.clear()
            elif msg.type == "continue":
                self.running, self._last_time = True, None
                self._times.clear()
            elif msg.type == "stop":
                self.running = False
            elif msg.type == "songpos":
                self._position = msg.pos * CLOCKS_PER_BEAT // 4  # song position counts sixteenths
                self._last_time = None

    @property
    def bpm(self) -> float | None:
        """Tempo from the fitted seconds per clock tick; None until 8 ticks have arrived."""
        with self._lock:
            times = list(self._times)
        n = len(times)
        if n < 8:
            return None
        mean_i = (n - 1) / 2.0
        mean_t = sum(times) / n
        num = sum((i - mean_i) * (t - mean_t) for i, t in enumerate(times))
        den = sum((i - mean_i) ** 2 for i in range(n))
        seconds_per_tick = num / den
        return 60.0 / (seconds_per_tick * CLOCKS_PER_BEAT) if seconds_per_tick > 0 else None

    def beat_at(self, t: float | None = None) -> float | None:
        """The song position in beats at perf_counter time `t` (default now), extrapolated from the last tick."""
        bpm = self.bpm
        with self._lock:
            if self._last_time is None:
                return None
            position, last = self._position, self._last_time
        t = time.perf_counter() if t is None else t
        extra = (t - last) * bpm / 60.0 if (bpm and self.running) else 0.0
        return position / CLOCKS_PER_BEAT + extra


class ClockSender:
    """Sends MIDI clock (24 per quarter note) with start/stop, on absolute deadlines from its own thread."""

    def __init__(self, port, bpm: float = 120.0):
        self.port = port
        self.bpm = bpm
        self.sent_times: deque[tuple[float, float]] = deque(maxlen=10_000)  # (deadline, sent)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, at: float | None = None) -> "ClockSender":
        self._stop.clear()
        at = time.perf_counter() + 0.01 if at is None else at
        self._thread = threading.Thread(target=self._run, args=(at,), name="midi-clock", daemon=True)
        self._thread.start()
        return self

    def _run(self, t0: float) -> None:
        raise_thread_priority()
        if not sleep_until(t0, self._stop):
            return
        self.port.send(mido.Message("start"))
        deadline = t0
        while True:
            if not sleep_until(deadline, self._stop):
                break
            self.port.send(mido.Message("clock"))
            self.sent_times.append((deadline, time.perf_counter()))
            deadline += 60.0 / (self.bpm * CLOCKS_PER_BEAT)  # read every tick: tempo changes apply at once

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
            self.port.send(mido.Message("stop"))


# --- jam mode ----------------------------------------------------------------------------------
@dataclass
class JamConfig:
    bars: int = 2  # length of each answer
    pause_beats: float = 2.0  # this much silence after the player's last note-off triggers an answer
    trigger_cc: int | None = None  # or this controller (value >= 64) does
    bpm: float = 120.0  # the tempo when no clock is followed
    meter: tuple[int, int] = (4, 4)
    lead: float = 0.05  # seconds between deciding to answer and the earliest bar line the answer may start on
    sampling: "SamplingConfig | None" = None


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
        from .generate import SamplingConfig  # generate pulls in torch: only when a jam really answers

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

"""The Scheduler: timed MIDI messages sent from one thread at absolute perf_counter deadlines, which tracks
every sounding note so that stop, error and exit always release them (a note never hangs)."""
from __future__ import annotations

import atexit
import heapq
import itertools
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import mido

from .timing import SPIN_SECONDS, raise_thread_priority, wait_until

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
    (note-offs, then CC64=0 and CC123 on every used channel). `max_lateness` is the worst send time minus
    deadline so far; with `history` > 0 (benchmarks, tests) `lateness` and `sent` also keep the last `history`
    sends' lateness and (send time, message), which an ordinary run has no use for.
    """

    def __init__(self, port, *, spin: float = SPIN_SECONDS, on_error: Callable[[Exception], None] | None = None,
                 history: int = 0):
        self.port = port
        self.spin = spin
        self.on_error = on_error
        self.max_lateness = 0.0
        self.history = history
        self.lateness: deque[float] = deque(maxlen=history)
        self.sent: deque[tuple[float, mido.Message]] = deque(maxlen=history)
        self.error: Exception | None = None
        self.realtime = False  # whether the thread got real-time scheduling
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._note_ids = itertools.count()
        self._sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> id of the note holding it
        self._used_channels: set[int] = set()
        self._timed = getattr(port, "send_timed", None)
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

    def cut(self, at: float, silence=()) -> None:
        """A new mix from `at` on: drop every pending note that starts at or after `at`, and every pending
        note of the keys (channel, pitch) in `silence`, which are also released now if they sound. Notes
        before `at` of the other keys still sound, late ones included, and sounding ones end when they
        would: so nothing due is lost, and the notes that go on are not cut."""
        silence = set(silence)
        with self._cond:
            dropped = {ev.note_id for ev in self._heap
                       if ev.note_id >= 0 and ev.message.type == "note_on"
                       and (ev.deadline >= at or (ev.message.channel, ev.message.note) in silence)}
            self._heap = [ev for ev in self._heap if ev.note_id not in dropped]
            heapq.heapify(self._heap)
            now = time.perf_counter()
            for key in sorted(silence & self._sounding.keys()):
                del self._sounding[key]  # its own note-off, still pending, then finds the key free and is skipped
                self._send(mido.Message("note_off", channel=key[0], note=key[1], velocity=0), now)
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
        return wait_until(self.idle, timeout)

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
        if self._timed is not None:
            self._timed(msg, deadline)  # an output that places each message at its deadline itself (the synth)
        else:
            self.port.send(msg)
        t = time.perf_counter()
        self.max_lateness = max(self.max_lateness, t - deadline)
        if self.history:
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

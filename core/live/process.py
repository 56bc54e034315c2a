"""SchedulerProcess: the Scheduler in a child process that owns the MIDI output (or the built-in synth and
its audio device), driven through a pipe."""
from __future__ import annotations

import threading

import mido

from .ports import APP_PORT_NAME, PortError, open_output
from .scheduler import Scheduler
from .timing import SPIN_SECONDS, raise_thread_priority, wait_until

REPLY_TIMEOUT = 5.0  # seconds a child has to answer; it answers in microseconds unless stopped or hung
CANCELLED = "the start was cancelled"


class SchedulerProcess:
    """The Scheduler in a child process that owns the MIDI output, so nothing this process does (the
    generator's Python, the GUI, a garbage collection) can hold up a note: they share no GIL. If this
    process dies, the child sees its pipe close and releases every sounding note before it exits.

    Same methods as Scheduler; deadlines are this process's time.perf_counter() values, which the child
    shares (a system-wide monotonic clock). stop() is asynchronous: the child releases on receipt.
    `history`: as the Scheduler's, kept in the child.

    With `synth` (a SynthConfig) the child's output is the built-in synth (core.live.synth) instead of a
    MIDI port: its audio callback runs there too, out of reach of this process's GIL.
    """

    def __init__(self, port_name: str | None = None, *, virtual: bool | None = None, backend: str | None = None,
                 history: int = 0, synth=None, reply_timeout: float = REPLY_TIMEOUT):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_scheduler_process_main,
                                    args=(child_end, port_name, virtual, backend, history, synth),
                                    name="midi-scheduler", daemon=True)
        self._child_end = child_end
        self._lock = threading.Lock()  # one request and its reply at a time
        self.reply_timeout = reply_timeout
        self.error: Exception | None = None  # set once the child has gone: later requests do nothing
        self.port_name = ""
        self._start_lock = threading.Lock()  # start() and cancel() on different threads
        self._cancelled = False
        self._ready = False

    def start(self, timeout: float = 30.0) -> "SchedulerProcess":
        """Start the child and wait for its port (the synth: its engine and audio device), up to `timeout`
        seconds: this blocks, so a GUI calls it from a worker thread (cancel() ends the wait from another).
        Raises PortError when the child cannot open its output, does not answer, or was cancelled."""
        with self._start_lock:
            if self._cancelled:
                raise PortError(CANCELLED)
            self._process.start()
        self._child_end.close()
        if not self._conn.poll(timeout):  # also true at EOF: a child that died, or was killed by cancel()
            self._process.kill()
            self._process.join(5)
            raise PortError("the MIDI scheduler process did not start")
        try:
            kind, detail = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(5)
            kind, detail = "error", f"the MIDI scheduler process ended (exit code {self._process.exitcode})"
        with self._start_lock:
            self._ready = kind == "ready"
            cancelled = self._cancelled
        if self._ready and cancelled:  # cancelled as it answered: released and ended as close() does
            self.close()
        elif kind == "error":
            self._process.join(5)
        if kind == "error" or cancelled:
            raise PortError(CANCELLED if cancelled else detail)
        self.port_name = detail
        return self

    def cancel(self) -> None:
        """From any thread, while start() waits on another (or before it runs): the child is killed at once
        if it has not answered yet (it has sounded nothing), and start() raises PortError. It waits at most
        for the child's launch (milliseconds), never for its answer. A child whose answer start() is reading
        is closed there before start() raises; once start() has returned, end the child with close()."""
        with self._start_lock:
            self._cancelled = True
            if not self._ready and self._process.pid is not None:
                self._process.kill()

    def _post(self, *command) -> None:
        with self._lock:
            if self.error is not None:  # gone, or not reading: a send could block once the pipe is full
                return
            try:
                self._conn.send(command)
            except (OSError, EOFError, ValueError) as e:  # the child is gone (it released what it could)
                self.error = e

    _GONE = {"status": (0, 0), "lateness": [], "stats": {}}  # what a child that is gone answers

    def _ask(self, *command):
        """The child's reply, or what a gone child answers once it has closed its pipe or not answered
        within `reply_timeout` seconds (a stopped or hung child): either way it is gone from then on, and
        `error` says why. A late reply would answer the wrong question, so nothing is asked after that."""
        with self._lock:
            if self.error is not None:
                return self._GONE[command[0]]
            try:
                self._conn.send(command)
                if self._conn.poll(self.reply_timeout):  # also true at EOF: recv then raises EOFError
                    return self._conn.recv()
                self.error = TimeoutError(f"the MIDI scheduler process did not answer within "
                                          f"{self.reply_timeout:g} s")
            except (OSError, EOFError, ValueError) as e:
                self.error = e
            return self._GONE[command[0]]

    def send_at(self, deadline: float, message: mido.Message) -> None:
        self._post("at", deadline, bytes(message.bytes()))

    def note(self, channel: int, pitch: int, velocity: int, on_time: float, off_time: float) -> None:
        self._post("note", channel, pitch, velocity, on_time, off_time)

    def stop(self) -> None:
        self._post("stop")

    def cut(self, at: float, silence=()) -> None:
        self._post("cut", at, [tuple(k) for k in silence])

    def set_volume(self, volume: float) -> None:
        """The synth's volume, 0..1 (a MIDI port ignores it)."""
        self._post("volume", float(volume))

    def synth_stats(self) -> dict:
        """The synth's counters (SynthPort.stats); {} for a MIDI port."""
        return self._ask("stats")

    @property
    def pending(self) -> int:
        return self._ask("status")[0]

    @property
    def sounding(self) -> int:
        return self._ask("status")[1]

    @property
    def lateness(self) -> list[float]:
        """The lateness of the last `history` sends; without a history, only the worst so far."""
        return self._ask("lateness")

    @property
    def max_lateness(self) -> float:
        return max(self.lateness, default=0.0)

    def idle(self) -> bool:
        pending, sounding = self._ask("status")
        return pending == 0 and sounding == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        return wait_until(self.idle, timeout, poll=0.005)  # each poll is a round trip to the child

    def close(self) -> None:
        """Release everything, close the port and end the child. The pipe closes before the wait: a child that
        stopped answering (asked nothing more) then releases and ends as soon as it runs again."""
        alive = self._process.is_alive()
        if alive:
            self._post("close")
        self._conn.close()
        if alive:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()

    def __enter__(self) -> "SchedulerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _scheduler_process_main(conn, port_name, virtual, backend, history, synth) -> None:
    """The child of SchedulerProcess: open the port, then obey the pipe until "close" or until it breaks."""
    raise_thread_priority(4)  # this thread takes the GIL too: unpreempted, it never makes the scheduler wait
    try:
        if synth is not None:
            from .synth import SynthPort  # only this child loads the engine and the audio library

            port = SynthPort(synth)
        else:
            port = open_output(port_name, virtual=virtual, backend=backend)
    except Exception as e:
        conn.send(("error", str(e)))
        return
    # the synth places each message at its deadline's sample itself: no spinning for the last ms, which would
    # hold this process's GIL while the audio callback needs it
    scheduler = Scheduler(port, history=history, spin=0.0 if synth is not None else SPIN_SECONDS).start()
    conn.send(("ready", getattr(port, "name", port_name or APP_PORT_NAME)))
    try:
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone: release everything below
            op, reply = command[0], None
            if op == "note":
                scheduler.note(*command[1:])
            elif op == "at":
                scheduler.send_at(command[1], mido.Message.from_bytes(command[2]))
            elif op == "stop":
                scheduler.stop()
            elif op == "cut":
                scheduler.cut(command[1], [tuple(k) for k in command[2]])
            elif op == "status":
                reply = (scheduler.pending, scheduler.sounding)
            elif op == "lateness":
                reply = list(scheduler.lateness) if history else [scheduler.max_lateness]
            elif op == "volume":
                if hasattr(port, "set_volume"):
                    port.set_volume(command[1])
            elif op == "stats":
                reply = port.stats() if hasattr(port, "stats") else {}
            elif op == "close":
                break
            if reply is not None:
                try:
                    conn.send(reply)
                except OSError:
                    break  # the parent closed the pipe without waiting for the answer: release below
    finally:
        scheduler.close()
        port.close()

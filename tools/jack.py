"""A private JACK server on the dummy driver: a real MIDI loopback without a sound card, and a
recorder in a child process standing in for a DAW on the other end.

The test suite and the live benchmark start one under a unique server name, point every JACK
client of this process at it (JACK_DEFAULT_SERVER) and kill it by its PID at the end.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid


def jackd_available() -> bool:
    return shutil.which("jackd") is not None


class JackServer:
    """`with JackServer() as jack:` starts jackd (dummy driver) and stops it on exit."""

    def __init__(self, name: str | None = None, rate: int = 48000, period: int = 64, realtime: bool = True):
        self.name = name or f"rwkv-music-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate = rate
        self.period = period
        self.realtime = realtime
        self.process: subprocess.Popen | None = None
        self._previous_default: str | None = None

    @property
    def period_seconds(self) -> float:
        return self.period / self.rate

    def start(self, timeout: float = 10.0) -> "JackServer":
        """Start jackd and wait until it accepts clients; real-time scheduling first where allowed
        (a non-realtime jackd on a loaded machine delays MIDI by tens of ms), else without."""
        if not jackd_available():
            raise RuntimeError("jackd is not installed (apt-get install jackd2)")
        if self.realtime:
            try:
                return self._start(timeout, realtime=True)
            except RuntimeError:
                self.realtime = False
        return self._start(timeout, realtime=False)

    def _start(self, timeout: float, realtime: bool) -> "JackServer":
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        wait_us = int(round(self.period * 1e6 / self.rate))  # the dummy driver's cycle, else it waits 21 ms
        cmd = ["jackd", "--realtime" if realtime else "--no-realtime", "-n", self.name,
               "-d", "dummy", "-r", str(self.rate), "-p", str(self.period), "-w", str(wait_us)]
        self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_until_up(timeout)
        except Exception:
            self.stop()
            raise
        # Every JACK client this process opens from now on (rtmidi included) talks to this server.
        self._previous_default = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        return self

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiter = shutil.which("jack_wait")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jackd exited with status {self.process.returncode}")
            if waiter:
                done = subprocess.run([waiter, "-s", self.name, "-c"], capture_output=True, text=True,
                                      timeout=max(1.0, deadline - time.monotonic()))
                if done.stdout.strip() == "running":
                    return
            elif any(f.startswith(f"jack_{self.name}_") for f in os.listdir("/dev/shm")):
                time.sleep(0.2)  # the shared memory appears just before the server accepts clients
                return
            time.sleep(0.05)
        raise RuntimeError(f"jackd did not come up within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            if self._previous_default is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._previous_default

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class MidiRecorder:
    """A JACK MIDI input in a child process, as a DAW would be: it records (arrival time, message) without
    sharing our GIL, so what it sees is what the port delivered. Times are time.perf_counter() values
    (CLOCK_MONOTONIC: comparable across processes)."""

    def __init__(self, client: str | None = None):
        self.client = client or f"rec{uuid.uuid4().hex[:8]}"
        self.port_name = f"{self.client}:in"
        self.process: subprocess.Popen | None = None
        self._messages: list = []  # (seconds since the first message arrived, message)
        self._first = float("inf")  # perf_counter() time of the first arrival
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> "MidiRecorder":
        self.process = subprocess.Popen([sys.executable, "-m", "tools.jack", "record", self.client],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("the MIDI recorder did not start")
        return self

    def _read(self, ready: threading.Event) -> None:
        import mido

        for line in self.process.stdout:
            if line.startswith("ready"):
                ready.set()
                continue
            since_first, polled, data = line.split(" ", 2)
            since_first, polled = float(since_first), float(polled)
            with self._lock:
                # a message arrived at (first arrival + since_first), and no later than it was polled: the
                # earliest such bound over all messages is the first arrival's time, to within a poll
                self._first = min(self._first, polled - since_first)
                self._messages.append((since_first, mido.Message.from_hex(data.strip())))

    def messages(self) -> list:
        with self._lock:
            return [(self._first + since_first, m) for since_first, m in self._messages]

    def wait_for(self, predicate, timeout: float = 5.0) -> list:
        """The messages once `predicate(messages)` holds (or at the timeout): they arrive through a pipe."""
        end = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if predicate(msgs) or time.monotonic() > end:
                return msgs
            time.sleep(0.01)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_connected(self, out, timeout: float = 10.0) -> None:
        """Send probes through the output `out` until one arrives (JACK makes a new connection in a
        later process cycle, later still on a busy machine), then forget what was recorded."""
        import mido

        probe = mido.Message("control_change", control=119, value=0)  # an undefined controller
        end = time.monotonic() + timeout
        while not self.messages():
            if time.monotonic() > end:
                raise RuntimeError(f"nothing reached {self.port_name} within {timeout:g} s")
            out.send(probe)
            self.wait_for(bool, 0.05)
        time.sleep(0.05)  # probes still on their way
        self.clear()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # closing its JACK client can hang on a loaded machine
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> "MidiRecorder":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _record(client: str) -> None:
    """Child process of MidiRecorder: print "<seconds since the first message> <perf_counter when polled>
    <hex bytes>" per message until terminated.

    No Python callback: rtmidi's JACK thread queues each message with its arrival time (JACK's clock, as
    time since the previous message) without waiting for our GIL. A callback had to take the GIL inside
    JACK's process cycle; when that made the cycle late, the server (asynchronous, as a user's is) had
    moved on and the late cycle read a reused buffer: a note-off seen twice, a velocity from another
    event. The main thread polls the queue and writes the lines out."""
    import rtmidi

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=client, queue_size_limit=1 << 16)
    port.ignore_types(sysex=False, timing=False, active_sense=True)
    port.open_virtual_port("in")
    print("ready", flush=True)
    since_first = 0.0
    try:
        while not stop.is_set():
            lines = []
            while (got := port.get_message()) is not None:
                data, delta = got
                since_first += delta
                lines.append(f"{since_first!r} {time.perf_counter()!r} {' '.join(f'{b:02X}' for b in data)}\n")
            if lines:
                sys.stdout.write("".join(lines))
                sys.stdout.flush()
            else:
                stop.wait(0.002)  # the times are rtmidi's: polling more often would only take CPU
    finally:
        port.close_port()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        _record(sys.argv[2])

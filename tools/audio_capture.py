"""An audio recorder on a JACK server (tools.jack.JackServer): the listener at the other end of the
built-in synth in tests and benchmarks, as a speaker would be.

It connects to every audio output of a client, keeps each JACK cycle's frames, and maps JACK frames to
time.perf_counter() seconds (the clock the schedulers use) from when its callbacks run: the median over
callbacks of (callback time - frames since the cycle started - the cycle's first frame / rate). Not the
earliest: the dummy driver's first cycles run ahead of its clock (measured: the minimum sat 8 ms below
the median at 64-frame periods).
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np


class AudioCapture:
    """`with AudioCapture("RWKV-Music") as cap:` records the stereo output of the JACK client whose name
    starts with the given prefix (its ports may appear after this starts: wait_ports connects them)."""

    def __init__(self, source_prefix: str, name: str = "capture"):
        import jack

        self.source_prefix = source_prefix
        self.client = jack.Client(name, no_start_server=True)
        self.rate = self.client.samplerate
        self.inports = [self.client.inports.register(f"in_{i}") for i in (1, 2)]
        self._blocks: list[tuple[int, np.ndarray]] = []  # (first frame, (n, 2) samples)
        self._offsets: list[float] = []  # per callback: perf_counter seconds minus frame / rate
        self.xruns = 0  # the server's, as it reports them to every client
        self.client.set_xrun_callback(self._xrun)
        self._lock = threading.Lock()
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        now = time.perf_counter()
        first = self.client.last_frame_time
        start = now - self.client.frames_since_cycle_start / self.rate
        offset = start - first / self.rate
        block = np.stack([p.get_array().copy() for p in self.inports], axis=1)
        with self._lock:
            self._offsets.append(offset)
            del self._offsets[:-2000]
            self._blocks.append((first, block))

    def _xrun(self, delay_usecs: float) -> None:
        self.xruns += 1

    def start(self) -> "AudioCapture":
        self.client.activate()
        return self

    def wait_ports(self, timeout: float = 10.0) -> list[str]:
        """Connect to the source's audio outputs once they exist; their names."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ports = [p for p in self.client.get_ports(is_audio=True, is_output=True)
                     if p.name.startswith(self.source_prefix)]
            if len(ports) >= 2:
                for src, dst in zip(ports, self.inports):
                    if dst.name not in [c.name for c in self.client.get_all_connections(src)]:
                        self.client.connect(src, dst)
                return [p.name for p in ports]
            time.sleep(0.05)
        raise RuntimeError(f"no audio outputs of {self.source_prefix!r} appeared within {timeout:g} s")

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()

    def audio(self) -> tuple[np.ndarray, float]:
        """What was recorded, as one (frames, 2) array, and the perf_counter time of its first frame
        (gaps, if a cycle was missed, are filled with zeros)."""
        with self._lock:
            blocks, offset = list(self._blocks), float(np.median(self._offsets[-1000:] or [0.0]))
        if not blocks:
            return np.zeros((0, 2), np.float32), 0.0
        first = blocks[0][0]
        total = blocks[-1][0] + len(blocks[-1][1]) - first
        out = np.zeros((total, 2), np.float32)
        for frame, block in blocks:
            out[frame - first:frame - first + len(block)] = block
        return out, offset + first / self.rate

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()

    def __enter__(self) -> "AudioCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class CaptureProcess:
    """AudioCapture in a child process, for tests whose own process also opens JACK clients through
    rtmidi: rtmidi holds the GIL while it waits for the server, and the server then waits for an in-process
    capture callback that needs the GIL (a deadlock, measured). Same use: level(), clear(), audio()."""

    def __init__(self, source_prefix: str):
        import subprocess
        import sys

        self.process = subprocess.Popen([sys.executable, "-m", "tools.audio_capture", "serve", source_prefix],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self._levels: list[tuple[float, float]] = []  # (perf_counter time, peak of the 10 ms before it)
        self._replies: list[str] = []
        self._cond = threading.Condition()
        self.rate = 48000
        threading.Thread(target=self._read, daemon=True).start()
        if self._reply(30) != "ready":
            self.close()
            raise RuntimeError(f"the audio recorder found no outputs of {source_prefix!r}")

    def _read(self) -> None:
        for line in self.process.stdout:
            kind, _, rest = line.strip().partition(" ")
            with self._cond:
                if kind == "level":
                    t, peak = rest.split()
                    self._levels.append((float(t), float(peak)))
                else:
                    self._replies.append(line.strip())
                self._cond.notify_all()
        with self._cond:
            self._replies.append("")  # the child is gone
            self._cond.notify_all()

    def _reply(self, timeout: float = 10.0) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: self._replies, timeout):
                return ""
            return self._replies.pop(0)

    def _command(self, text: str, timeout: float = 10.0) -> str:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self._reply(timeout)

    def level(self, seconds: float) -> float:
        """The peak over the last `seconds` of audio."""
        since = time.perf_counter() - seconds
        with self._cond:
            return max((p for t, p in self._levels if t >= since), default=0.0)

    def clear(self) -> None:
        self._command("clear")
        with self._cond:
            self._levels.clear()

    def audio(self) -> tuple[np.ndarray, float]:
        import tempfile

        path = tempfile.mktemp(suffix=".npz")
        assert self._command(f"save {path}") == "saved"
        data = np.load(path)
        os.unlink(path)
        return data["audio"], float(data["t0"])

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "CaptureProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(prefix: str) -> None:
    """The child of CaptureProcess: commands on stdin (clear, save PATH), a level line every 10 ms."""
    import sys

    with AudioCapture(prefix, name=f"rec{os.getpid()}") as cap:
        try:
            cap.wait_ports()
        except RuntimeError:
            print("missing", flush=True)
            return
        print("ready", flush=True)
        done = threading.Event()

        def levels():
            seen = 0
            while not done.wait(0.01):
                with cap._lock:
                    fresh = [b for _, b in cap._blocks[seen:]] if seen <= len(cap._blocks) else []
                    seen = len(cap._blocks)
                if fresh:
                    peak = float(max(np.abs(b).max() for b in fresh))
                    print(f"level {time.perf_counter()!r} {peak!r}", flush=True)

        threading.Thread(target=levels, daemon=True).start()
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "clear":
                cap.clear()
                print("cleared", flush=True)
            elif command == "save":
                audio, t0 = cap.audio()
                np.savez(arg, audio=audio, t0=t0)
                print("saved", flush=True)
        done.set()


def _record(prefix: str, seconds: float, path: str) -> None:
    """`python -m tools.audio_capture PREFIX SECONDS OUT.npz`: record in a process of its own (a benchmark's
    busy process would delay this client's callbacks and count its own dropouts as the synth's)."""
    import sys

    with AudioCapture(prefix, name=f"rec{os.getpid()}") as cap:
        cap.wait_ports()
        print("ready", flush=True)
        sys.stdin.readline()  # recording starts when told, as the measured stretch begins
        cap.clear()
        xruns = cap.xruns
        time.sleep(seconds)
        audio, t0 = cap.audio()
        np.savez(path, audio=audio, t0=t0, xruns=cap.xruns - xruns, rate=cap.rate)
    print("done", flush=True)


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "serve":
        _serve(sys.argv[2])
    else:
        _record(sys.argv[1], float(sys.argv[2]), sys.argv[3])

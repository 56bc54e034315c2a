"""The built-in synth, measured: render speed of `rwkv-music render`, and in real time (its own process, on a
private JACK server with the dummy driver, recorded by a JACK client in another process) the latency from a
note's deadline to its audio, dropouts and JACK xruns per minute idle, while this process generates and while
a fine-tuning job runs, the synth process's CPU share and memory.

    .venv/bin/python bench/bench_synth.py [--seconds 20] [--period 64] [--no-train] [--no-generate]

Goals (issue 27): render >= 20x real time; <= 20 ms from note to audio on Linux; no underrun while the model
generates or trains. Needs jackd (apt-get install jackd2) for the real-time part.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mido  # noqa: E402
import numpy as np  # noqa: E402

from core.live import SchedulerProcess  # noqa: E402
from core.live.synth import SynthConfig, SynthEngine, midi_events, render_events  # noqa: E402
from tools.jack import JackServer, jackd_available  # noqa: E402

FILES = sorted((ROOT / "tests" / "data" / "pop909").glob("*.mid"))
CORPUS = ROOT / "tests" / "data" / "corpus"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def table(title: str, header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def render_speed() -> list[tuple]:
    rows = []
    for path in FILES:
        events = midi_events(str(path))
        t = time.perf_counter()
        audio = render_events(events, SynthEngine(None, 44100))
        took = time.perf_counter() - t
        seconds = len(audio) / 44100
        notes = sum(m.type == "note_on" and m.velocity > 0 for _, m in events)
        rows.append((path.name, notes, f"{seconds:.1f} s", f"{took:.2f} s", f"{seconds / took:.0f}x"))
    return rows


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_mb(pid: int) -> tuple[float, float]:
    """The process's own resident memory (anonymous + file) and its resident shared memory (MB): with JACK
    the second is mostly the server's shared segments that every client maps."""
    kb = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            kb[key] = int(value.split()[0])
    return (kb.get("RssAnon", 0) + kb.get("RssFile", 0)) / 1024, kb.get("RssShmem", 0) / 1024


def latency(synth: SchedulerProcess, notes: int = 30, spacing: float = 0.4) -> tuple[float, float, float]:
    """Deadline -> first audio sample over -54 dBFS at the recorder (ms): p50, p99, max over `notes` notes."""
    from tools.audio_capture import AudioCapture

    with AudioCapture("RWKV-Music", name="latency") as cap:
        cap.wait_ports()
        time.sleep(0.3)
        cap.clear()
        base = time.perf_counter() + 0.2
        synth.send_at(base - 0.1, mido.Message("program_change", channel=0, program=73))
        times = [base + i * spacing for i in range(notes)]  # apart: each release has died before the next
        for i, t in enumerate(times):
            synth.note(0, 60 + i % 24, 100, t, t + 0.1)
        synth.wait_idle(notes * spacing + 5)
        time.sleep(0.3)
        audio, t0 = cap.audio()
    rate = 48000
    out = []
    for t in times:
        i = max(0, int((t - 0.005 - t0) * rate))
        loud = np.nonzero(np.abs(audio[i:i + rate // 10]).max(axis=1) > 0.002)[0]
        if len(loud):
            out.append((t0 + (i + loud[0]) / rate - t) * 1000)
    return percentile(out, 50), percentile(out, 99), max(out)


def server_alone(seconds: float) -> float:
    """xruns per minute of the JACK server with only a recorder on it (from the dummy driver's capture ports):
    what this machine's load does to any JACK client, before the synth adds anything."""
    out = tempfile.mktemp(suffix=".npz")
    rec = subprocess.Popen([sys.executable, "-m", "tools.audio_capture", "system:capture", str(seconds), out],
                           cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert rec.stdout.readline().strip() == "ready"
    rec.stdin.write("go\n")
    rec.stdin.flush()
    assert rec.stdout.readline().strip() == "done"
    rec.wait()
    xruns = int(np.load(out)["xruns"])
    os.unlink(out)
    return xruns / (seconds / 60)


def sustained(synth: SchedulerProcess, seconds: float, period: int) -> dict:
    """An organ chord held for `seconds`, recorded in another process: dropouts (JACK periods of silence while
    it sounds) and xruns, and the synth process's CPU share and memory over that time."""
    out = tempfile.mktemp(suffix=".npz")
    rec = subprocess.Popen([sys.executable, "-m", "tools.audio_capture", "RWKV-Music", str(seconds), out],
                           cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert rec.stdout.readline().strip() == "ready"
    pid = synth._process.pid
    stats0, cpu0, wall0 = synth.synth_stats(), cpu_seconds(pid), time.perf_counter()
    start = time.perf_counter() + 0.05
    synth.send_at(start - 0.01, mido.Message("program_change", channel=1, program=19))
    for pitch in (48, 55, 60, 64, 67):
        synth.note(1, pitch, 90, start, start + seconds + 1.0)
    rec.stdin.write("go\n")
    rec.stdin.flush()
    assert rec.stdout.readline().strip() == "done"
    rec.wait()
    cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)
    stats = synth.synth_stats()
    synth.stop()
    data = np.load(out)
    os.unlink(out)
    audio = data["audio"]
    blocks = audio[: len(audio) // period * period].reshape(-1, period, 2)
    level = np.abs(blocks).max(axis=(1, 2))
    steady = level[int(0.3 * 48000 / period):-int(0.3 * 48000 / period)]  # skip the attack and the end
    minutes = seconds / 60
    return dict(dropouts=int((steady < 1e-5).sum()) / minutes, xruns=int(data["xruns"]) / minutes,
                gaps=(stats["gaps"] - stats0["gaps"]) / minutes, late=stats["late"] - stats0["late"],
                cpu=cpu * 100, rss=rss_mb(pid))


def generating(stop: threading.Event, threads: int) -> threading.Thread:
    """A generator sampling non-stop in this process (as the app's Continue does), on a random 6 x 384 model."""
    import torch

    from bench.background import sampling_thread
    from core.generate import Generator
    from core.network.checkpoint import save_checkpoint
    from core.midi import read_midi
    from core.network.model import RWKV7, ModelConfig
    from core.tokenizer import Tokenizer

    tok = Tokenizer()
    torch.manual_seed(0)
    path = os.path.join(tempfile.mkdtemp(prefix="bench-synth-"), "random.pth")
    save_checkpoint(RWKV7(ModelConfig(n_layer=6, n_embd=384, vocab_size=tok.vocab_size)), path,
                    {"tokenizer": tok.to_dict()})
    gen = Generator.load(path, ctx=1024, threads=threads)
    prompt = read_midi(str(FILES[0]))[0]
    prompt = prompt.slice(0, prompt.bar_starts()[8])
    thread = sampling_thread(gen, prompt, stop, max_tokens=300)
    time.sleep(2.0)  # prefill done, sampling steadily
    return thread


def training(folder: str):
    from core.training.train_config import TrainConfig
    from core.training.train_job import start_job

    config = TrainConfig(data=str(CORPUS), out=os.path.join(folder, "train"), steps=100000, n_layer=2, n_embd=128,
                         ctx_len=256, batch_size=4, eval_every=10**9, checkpoint_every=10**9, device="cpu",
                         workers=1)
    job = start_job(config)
    end = time.monotonic() + 300
    while time.monotonic() < end:  # until it really trains (the scan and tokenizing come first)
        events = job.poll_events()
        if any(e.kind == "step" for e in events):
            return job
        if any(e.terminal for e in events):
            raise RuntimeError(f"training ended early: {[e.message for e in events if e.terminal]}")
        time.sleep(0.2)
    raise RuntimeError("training did not start within 300 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each sustained measurement")
    ap.add_argument("--period", type=int, default=64, help="JACK period in frames (48 kHz)")
    ap.add_argument("--no-generate", action="store_true")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the generator")
    args = ap.parse_args()

    table("rwkv-music render (44.1 kHz, bundled GM bank)", ("file", "notes", "audio", "took", "speed"),
          render_speed())
    if not jackd_available():
        print("\njackd is not installed: no real-time measurements")
        return 0
    rows = []
    with JackServer(period=args.period) as jack:
        rows.append(("no synth: the JACK server and a recorder", "-", f"{server_alone(args.seconds):.1f}", "-", "-",
                     "-", "-"))
        synth = SchedulerProcess(synth=SynthConfig(backend="jack", volume=1.0)).start()
        try:
            p50, p99, worst = latency(synth)
            print(f"\nlatency, deadline -> audio at the recorder (JACK -p {args.period}, realtime={jack.realtime}): "
                  f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
            conditions = [("idle", None)]
            if not args.no_generate:
                conditions.append(("generating in the app's process", "generate"))
            if not args.no_train:
                conditions.append(("fine-tuning job running", "train"))
            for label, kind in conditions:
                stop, thread, job = threading.Event(), None, None
                if kind == "generate":
                    thread = generating(stop, args.threads)
                elif kind == "train":
                    job = training(tempfile.mkdtemp(prefix="bench-synth-train-"))
                try:
                    r = sustained(synth, args.seconds, args.period)
                finally:
                    stop.set()
                    if thread:
                        thread.join()
                    if job:
                        job.cancel()
                        job.wait(60)
                rows.append((label, f"{r['dropouts']:.1f}", f"{r['xruns']:.1f}", f"{r['gaps']:.1f}", r["late"],
                             f"{r['cpu']:.1f}%", f"{r['rss'][0]:.0f} MB (+{r['rss'][1]:.0f} MB shm)"))
        finally:
            synth.close()
    table(f"sustained chord, {args.seconds:g} s each (per minute; synth process CPU share of one core, RSS)",
          ("condition", "dropouts/min", "xruns/min", "late callbacks/min", "late msgs", "synth CPU", "synth RSS"),
          rows)
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of core.midi reading and writing, next to mido.MidiFile parsing the same bytes.

    .venv/bin/python bench/bench_midi.py [--repeat 3]

Rows: the corpus subset in tests/data/corpus (all files together) and one synthetic dense file.
"""
from __future__ import annotations

import argparse
import io
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mido  # noqa: E402

from core.midi import read_midi, score_to_midifile  # noqa: E402
from core.score import Note, Score  # noqa: E402


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _dense_file(n_notes: int) -> bytes:
    notes = [Note(i * 60, 240, 36 + (i * 7) % 60, 1 + i % 127, (i // 500) % 8 * 8) for i in range(n_notes)]
    buf = io.BytesIO()
    score_to_midifile(Score(notes)).save(file=buf)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    corpus = [f.read_bytes() for f in sorted((ROOT / "tests" / "data" / "corpus").rglob("*.mid"))]
    rows = [("corpus subset", corpus), ("dense synthetic", [_dense_file(100_000)])]
    print(f"{'input':<16} {'files':>5} {'MB':>6} {'notes':>8} {'read s':>7} {'notes/s':>9} "
          f"{'mido parse s':>12} {'write s':>8}")
    for name, blobs in rows:
        scores = [read_midi(b)[0] for b in blobs]
        notes = sum(len(s.notes) for s in scores)
        read_s = _best(lambda: [read_midi(b) for b in blobs], args.repeat)
        mido_s = _best(lambda: [mido.MidiFile(file=io.BytesIO(b)) for b in blobs], args.repeat)
        write_s = _best(lambda: [score_to_midifile(s).save(file=io.BytesIO()) for s in scores], args.repeat)
        mb = sum(len(b) for b in blobs) / 1e6
        print(f"{name:<16} {len(blobs):>5} {mb:>6.2f} {notes:>8} {read_s:>7.3f} {notes / read_s:>9.0f} "
              f"{mido_s:>12.3f} {write_s:>8.3f}")


if __name__ == "__main__":
    main()

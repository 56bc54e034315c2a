"""Tokenizer throughput and compactness over a folder of MIDI files.

    python bench/bench_tokenizer.py [--dir tests/data/corpus] [--repeat 3]

Prints one row per file and a total: notes, tokens, tokens/note, encode and decode speed (notes/s), and the
cost of the grammar per token (allowed() + advance(), as sampling uses it), also with a sampling grammar on a
grid of straight 16ths (allowed() + snapped() + advance(): what keeping to the piece's grid adds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.midi import MidiReadError, read_midi  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def grammar_seconds_per_token(tok: Tokenizer, ids: list[int], grid: set[int] | None = None) -> float:
    g = tok.grammar(playable=grid is not None)
    g.limit_grid(grid)
    t0 = time.perf_counter()
    for t in ids:
        g.allowed()
        if grid is not None:
            g.snapped(t)
        g.advance(t)
    return (time.perf_counter() - t0) / len(ids)


SIXTEENTHS = {0, 6, 12, 18}  # places within the beat, in tokenizer steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus"))
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per file (best is kept)")
    args = ap.parse_args()
    paths = sorted(p for p in Path(args.dir).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not paths:
        print(f"no MIDI files under {args.dir}", file=sys.stderr)
        return 1
    tok = Tokenizer()
    grammar_warm = tok.encode(read_midi(paths[0])[0])  # fill the mask cache once, outside the timings
    grammar_seconds_per_token(tok, grammar_warm)

    header = f"{'file':<32} {'notes':>7} {'tokens':>8} {'tok/note':>8} {'enc notes/s':>12} {'dec notes/s':>12} " \
             f"{'grammar us/tok':>14} {'on a grid':>10}"
    print(header)
    print("-" * len(header))
    total = {"notes": 0, "tokens": 0, "enc": 0.0, "dec": 0.0, "gram": 0.0, "grid": 0.0}
    files = 0
    for path in paths:
        try:
            score, _ = read_midi(path)
        except MidiReadError as e:
            print(f"{path.name[-32:]:<32} skipped: {e}")
            continue
        if not score.notes:
            continue
        ids = tok.encode(score)
        enc = best_time(lambda: tok.encode(score), args.repeat)
        dec = best_time(lambda: tok.decode(ids), args.repeat)
        gram = grammar_seconds_per_token(tok, ids)
        grid = grammar_seconds_per_token(tok, ids, SIXTEENTHS)
        n = len(score.notes)
        label = str(path.relative_to(args.dir))[-32:]
        print(f"{label:<32} {n:>7} {len(ids):>8} {len(ids) / n:>8.3f} {n / enc:>12,.0f} {n / dec:>12,.0f} "
              f"{gram * 1e6:>14.2f} {grid * 1e6:>10.2f}")
        files += 1
        total["notes"] += n
        total["tokens"] += len(ids)
        total["enc"] += enc
        total["dec"] += dec
        total["gram"] += gram * len(ids)
        total["grid"] += grid * len(ids)
    print("-" * len(header))
    n, t = total["notes"], total["tokens"]
    print(f"{f'TOTAL ({files} files)':<32} {n:>7} {t:>8} {t / n:>8.3f} {n / total['enc']:>12,.0f} "
          f"{n / total['dec']:>12,.0f} {total['gram'] / t * 1e6:>14.2f} {total['grid'] / t * 1e6:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

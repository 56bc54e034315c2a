"""The meter the model reads from a raw file: inferred (core.meter) against declared, on POP909's raw files.

    nice .venv/bin/python bench/eval_meter.py                       # the test split, the bundled model
    nice .venv/bin/python bench/eval_meter.py --split train --no-bits --limit 200   # tuning: accuracy only

POP909's files (../shared/corpus/pop909/midi/NNN.mid) mostly declare 1/4 throughout; their beat annotations
(annotations/NNN/beat_midi.txt) say where the downbeats are. The split is the one the bundled model was
trained with (resources/base-v2-corpus-manifest.json: the model never saw the test split).

Two tables:
1. Inference against the annotations, per file: the bar length (the annotations' most common distance
   between downbeats, in beats) and the downbeat (right when at least half the annotated downbeats lie
   within a 16th of a bar line of the inferred meter, whose bar lines can only be on 16ths); the beat
   phase (the inferred phase within a 16th of the annotated beats').
2. Bits per note of the model on the whole raw files, read as `rwkv-music eval --no-memory` reads a file
   (the bare network, one pass through the recurrent state): the declared meter (the model's view before core.meter), the inferred
   one (today's view: its notes moved by MeterGuess.shift to put their own 16ths on the tokenizer's), the
   inferred one with every note moved on by what is left between the beats and the view's 16th grid
   (MeterGuess.grid_offset, at most a 32nd, not done by the view), the annotated meter with its downbeats on
   the nearest 16th (a view that moves no note), and the file as the corpus builder rewrites it for training
   (tools/make_pop909.py: annotated meter, every event moved by under half a beat to put the beats on the grid).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.evaluate.bits import bits_per_note  # noqa: E402
from core.meter import BEAT, SIXTEENTH, infer_meter, model_meter  # noqa: E402
from core.midi import read_midi  # noqa: E402
from core.score import Score, TimeSignature  # noqa: E402
from tools.make_pop909 import meter_from_beats  # noqa: E402

SRC = ROOT.parent / "shared" / "corpus" / "pop909"
MANIFEST = ROOT / "resources" / "base-v2-corpus-manifest.json"


def annotated_beats(score: Score, beat_file: Path) -> list[tuple[float, bool]]:
    """(tick in the score, is a downbeat) of every annotated beat."""
    out = []
    for line in beat_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((score.tick_at(float(parts[0])), float(parts[2]) == 1.0))
    return out


def truth(beats: list[tuple[float, bool]]) -> tuple[int, list[float], float]:
    """The annotations' bar length in beats (the most common distance between downbeats), their downbeat
    ticks, and their beat phase in ticks [0, BEAT)."""
    downs = [i for i, (_, d) in enumerate(beats) if d]
    gaps = [b - a for a, b in zip(downs, downs[1:])]
    bar = max(set(gaps), key=gaps.count) if gaps else 4
    z = sum(complex(math.cos(2 * math.pi * t / BEAT), math.sin(2 * math.pi * t / BEAT)) for t, _ in beats)
    phase = (math.atan2(z.imag, z.real) % (2 * math.pi)) * BEAT / (2 * math.pi)
    return bar, [beats[i][0] for i in downs], phase


def circular(a: float, b: float, period: float) -> float:
    d = (a - b) % period
    return min(d, period - d)


def oracle_meter(beats: list[tuple[float, bool]]) -> list[TimeSignature]:
    """The annotated meter (tools/make_pop909.py's) with its bar lines on the nearest 16th of the raw file."""
    shift, meters = meter_from_beats(beats, BEAT)  # ticks after moving every event earlier by `shift`
    q = round(shift / SIXTEENTH) * SIXTEENTH
    out = [(tick + q, n) for tick, n in meters]
    t0, n0 = out[0]
    if t0 < 0:  # the first bar starts before the file: its first bar line at or after 0
        t0 += -(-(-t0) // (n0 * BEAT)) * n0 * BEAT
        while len(out) > 1 and out[1][0] <= t0:
            out = out[1:]
            t0 = max(t0, out[0][0])
            n0 = out[0][1]
    sigs = []
    if t0 > 0:
        for d in (4, 8, 16):
            unit = BEAT * 4 // d
            if t0 % unit == 0:
                sigs.append(TimeSignature(0, t0 // unit, d))
                break
    sigs.append(TimeSignature(t0, n0, 4))
    sigs += [TimeSignature(t, n, 4) for t, n in out[1:] if t > t0]
    return sigs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=SRC)
    p.add_argument("--manifest", type=Path, default=MANIFEST)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=0, help="the first N songs of the split (0: all)")
    p.add_argument("--model", default=None, help="default: the bundled model")
    p.add_argument("--no-bits", action="store_true", help="the inference table only (no model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--verbose", action="store_true", help="one line per song")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    manifest = json.loads(args.manifest.read_text())
    names = [e["title"] for e in manifest["pieces"] if e.get("collection") == "pop909" and e["split"] == args.split]
    names = names[:args.limit] if args.limit else names

    scorer = None
    if not args.no_bits:
        import torch

        from core.network.checkpoint import load_checkpoint
        from core.evaluate.files import sequence_nll_bits
        from core.paths import base_model
        from core.tokenizer import Tokenizer
        from tools.make_pop909 import convert
        torch.set_num_threads(args.threads)
        model, meta = load_checkpoint(args.model or str(base_model()), device="cpu")
        tok = Tokenizer.from_dict(meta["tokenizer"]) if "tokenizer" in meta else Tokenizer()
        pitch = tok.ids_of_kind("pitch")
        workdir = tempfile.TemporaryDirectory()

        def scorer(view: Score) -> tuple[float, int]:
            ids = tok.encode(view)
            return sequence_nll_bits(model, ids), sum(1 for t in ids if t in pitch)

    rows, bits = [], {k: [0.0, 0] for k in ("declared", "inferred", "moved", "oracle16", "corpus")}
    counts = {"files": 0, "inferred": 0}
    hits = {g: {"bar": 0, "downbeat": 0, "both": 0, "phase": 0} for g in ("view", "all")}
    t0 = time.perf_counter()
    for name in names:
        path = args.src / "midi" / f"{name}.mid"
        beat_file = args.src / "annotations" / name / "beat_midi.txt"
        score, _ = read_midi(path)
        beats = annotated_beats(score, beat_file)
        bar, downs, phase = truth(beats)
        declared = score.token_view(infer_meter=False)
        guess = model_meter(declared.time_signatures, declared.notes)
        row = {"song": name, "declared": [(t.tick, t.numerator, t.denominator) for t in score.time_signatures[:3]],
               "true_bar": bar, "true_phase": round(phase, 1)}
        counts["files"] += 1
        counts["inferred"] += guess is not None
        forced = guess or infer_meter(declared.notes)
        if forced is not None:
            # the annotations are in the file's ticks, the downbeat in the view's (the file's + shift)
            near = sum(1 for d in downs
                       if circular(d + forced.shift - forced.downbeat, 0, forced.bar_ticks) <= SIXTEENTH)
            row |= {"in_view": guess is not None, "bar": forced.beats, "downbeat": forced.downbeat,
                    "phase": round(forced.phase, 1), "contrast": round(forced.contrast, 3),
                    "downbeats_hit": round(near / max(len(downs), 1), 3)}
            right = {"bar": forced.beats == bar, "downbeat": near >= len(downs) / 2,
                     "phase": circular(forced.phase, phase, BEAT) <= SIXTEENTH / 2}
            right["both"] = right["bar"] and right["downbeat"]
            for key, ok in right.items():
                for group in ("all", "view") if guess is not None else ("all",):
                    hits[group][key] += ok
        if scorer is not None:
            views = {"declared": declared, "inferred": score.token_view(),
                     "oracle16": Score(declared.notes, list(declared.tempos), oracle_meter(beats))}
            if guess is not None:  # what a view that moved the notes onto its beat grid would give
                offset = round(guess.grid_offset)
                moved = [replace(n, start=max(n.start + guess.shift - offset, 0)) for n in declared.notes]
                views["moved"] = Score(moved, list(declared.tempos), guess.time_signatures())
            else:
                views["moved"] = declared
            corpus_file = Path(workdir.name) / f"{name}.mid"
            convert(path, beat_file, corpus_file)
            views["corpus"] = read_midi(corpus_file)[0].token_view(infer_meter=False)
            for k, view in views.items():
                b, n = scorer(view)
                bits[k][0] += b
                bits[k][1] += n
                row[f"bits_{k}"] = round(bits_per_note(b, n), 3)
        rows.append(row)
        if args.verbose:
            print(row, flush=True)
    seconds = time.perf_counter() - t0

    n = counts["files"]
    print(f"\nPOP909 {args.split} split, {n} raw files ({counts['inferred']} whose declared meter the model's view"
          f" replaces with the inferred one), {seconds:.0f} s")
    print("\nInferred meter against the beat annotations (share of files)")
    print(f"{'':34}{'meter replaced in the view':>30}{'every file (inference forced)':>32}")
    for key, label in (("bar", "right bar length"), ("downbeat", "right downbeat (within a 16th)"),
                       ("both", "right bar length and downbeat"), ("phase", "beat phase within a 32nd")):
        view, every, m = hits["view"][key], hits["all"][key], counts["inferred"]
        print(f"{label:34}{f'{view}/{m}':>22}{view / max(m, 1):>8.1%}{f'{every}/{n}':>24}{every / max(n, 1):>8.1%}")
    if scorer is not None:
        print("\nBits per note of the model on the whole raw files (as `rwkv-music eval --no-memory` reads them)")
        for k, label in (("declared", "declared meter (before core.meter)"),
                         ("inferred", "inferred meter + grid shift (core.meter)"),
                         ("moved", "inferred meter, notes moved onto its beats"),
                         ("oracle16", "annotated meter, bar lines on 16ths"),
                         ("corpus", "corpus builder's file (training view)")):
            total, notes = bits[k]
            print(f"{label:44}{bits_per_note(total, notes):>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "counts": counts, "hits": hits,
                                         "bits_per_note": {k: bits_per_note(*v) for k, v in bits.items()},
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

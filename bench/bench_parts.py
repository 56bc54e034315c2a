"""Generated notes in their tracks, parts that play their instrument, continuations as dense as the prompt.

    nice .venv/bin/python bench/bench_parts.py placement       # held-out true continuations, tracks hidden
    nice .venv/bin/python bench/bench_parts.py generate        # the bundled model's continuations (slow)
    nice .venv/bin/python bench/bench_parts.py bass            # Add part "Electric Bass (finger)"

placement: POP909 test songs (resources/base-v2-corpus-manifest.json's split, raw files from
/work/shared/corpus/pop909/midi) and Bach chorales (tests/data/corpus/bach and the manifest's test split
where /work/data/bach_programs holds them): the prompt is the first k bars, the true next m bars lose their
tracks and core.voices places them again. Printed: the share of notes back in their own track, against
"every note in the first track of its instrument" (what Score.add_notes did), and the share of the notes
placed in MELODY that are the top voice at their onset.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.midi import read_midi  # noqa: E402
from core.score import Note, Score  # noqa: E402
from core import voices  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POP = "/work/shared/corpus/pop909/midi"
BACH_EXTRA = "/work/data/bach_programs"


def _read(path: str) -> Score:
    s = read_midi(path)
    return s[0] if isinstance(s, tuple) else s


def test_files(collection: str) -> list[str]:
    manifest = json.load(open(os.path.join(ROOT, "resources", "base-v2-corpus-manifest.json")))
    names = [p["file"] for p in manifest["pieces"] if p["collection"] == collection and p["split"] == "test"]
    if collection == "pop909":
        return [os.path.join(POP, os.path.basename(n)) for n in names if os.path.exists(os.path.join(POP, os.path.basename(n)))]
    out = sorted(glob.glob(os.path.join(ROOT, "tests/data/corpus/bach/*.mid")))
    out += [os.path.join(BACH_EXTRA, n) for n in names if os.path.exists(os.path.join(BACH_EXTRA, n))]
    return out


def top_voice_share(notes: list[Note], all_notes: list[Note]) -> float | None:
    """Share of `notes` that are the highest pitch sounding (struck or held) at their onset among `all_notes`
    of their instrument."""
    if not notes:
        return None
    top = 0
    for n in notes:
        sounding = [m.pitch for m in all_notes if m.instrument == n.instrument and m.start <= n.start < m.start + max(m.duration, 1)]
        top += n.pitch >= max(sounding)
    return top / len(notes)


def placement_case(score: Score, k: int, m: int):
    bars = score.bar_starts(score.end_tick)
    if len(bars) < k + m + 1:
        return None
    start, end = bars[k], bars[k + m]
    tracks = score.tracks(include_empty=True)
    before = [[n for n in t.notes if n.start < start] for t in tracks]
    truth, new = [], []
    for i, t in enumerate(tracks):
        for n in t.notes:
            if start <= n.start < end:
                truth.append(i)
                new.append(Note(n.start, n.duration, n.pitch, n.velocity, n.program, n.drum))
    if not new:
        return None
    where = voices.place_notes(before, new, start)
    first = {}
    for i, t in enumerate(tracks):
        for n in before[i]:
            first.setdefault(n.instrument, i)
    baseline = [first.get(n.instrument) for n in new]
    names = [t.name for t in tracks]
    return new, truth, where, baseline, names


def placement(args) -> None:
    rows = []
    for collection in ("bach", "pop909"):
        files = test_files(collection)[:args.pieces]
        ok = base = total = 0
        mel_top, mel_top_base, mel_top_true = [], [], []
        for path in files:
            score = _read(path)
            for k in args.prompt_bars:
                case = placement_case(score, k, args.bars)
                if case is None:
                    continue
                new, truth, where, baseline, names = case
                total += len(new)
                ok += sum(w == t for w, t in zip(where, truth))
                base += sum(b == t for b, t in zip(baseline, truth))
                if "MELODY" in names:
                    mi = names.index("MELODY")
                    for sel, acc in ((where, mel_top), (baseline, mel_top_base), (truth, mel_top_true)):
                        s = top_voice_share([n for n, w in zip(new, sel) if w == mi], new)
                        if s is not None:
                            acc.append(s)
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        rows.append((f"{collection} ({len(files)} pieces, prompts at bars {args.prompt_bars})", total,
                     base / max(total, 1), ok / max(total, 1), mean(mel_top_base), mean(mel_top), mean(mel_top_true)))
    print(f"\nPlacement of the true next {args.bars} bars, tracks hidden (core.voices.place_notes)")
    print(f"{'test pieces':58s} {'notes':>6s} {'first track':>11s} {'voices':>7s} {'MELODY top: first':>18s} {'voices':>7s} {'true':>6s}")
    for r in rows:
        print(f"{r[0]:58s} {r[1]:6d} {r[2]:11.1%} {r[3]:7.1%} {r[4]:18.1%} {r[5]:7.1%} {r[6]:6.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["placement", "generate", "bass"])
    ap.add_argument("--pieces", type=int, default=50)
    ap.add_argument("--prompt-bars", type=int, nargs="+", default=[8, 16, 24])
    ap.add_argument("--bars", type=int, default=8)
    args = ap.parse_args()
    {"placement": placement}[args.what](args)


if __name__ == "__main__":
    main()

"""Generated notes in their tracks, parts that play their instrument, continuations as dense as the prompt.

    nice .venv/bin/python bench/bench_parts.py placement       # held-out true continuations, tracks hidden
    nice .venv/bin/python bench/bench_parts.py generate [--all] # the bundled model's continuations (slow)
    nice .venv/bin/python bench/bench_parts.py bass            # Add part "Electric Bass (finger)"

placement: POP909 test songs (resources/base-v2-corpus-manifest.json's split, raw files from
/work/shared/corpus/pop909/midi) and Bach chorales (tests/data/corpus/bach and the manifest's test split
where /work/data/bach_programs holds them): the prompt is the first k bars, the true next m bars lose their
tracks and core.voices places them again. Printed: the share of notes back in their own track, against
"every note in the first track of its instrument" (what Score.add_notes did), and the share of the notes
placed in MELODY that are the top voice at their onset.

generate: the bundled model continues the first 16 bars of POP909 test songs and Bach test chorales by 8
bars (default sampling: memory on), rules off (no placement, no chord caps: what main did) and on. Printed
per take: notes per bar against the prompt's last 8 bars (median; share of takes in 0.5-2x; over 2x), the
most notes sounding at once, the share of takes with a bigger chord (notes of one instrument at one onset)
than any in the prompt's last 8 bars, MELODY's top-voice share, tracks a save adds, and of the generated notes that
hit a true next note (same onset and pitch) the share placed in that note's track. --all: memory 0 too.

bass: Add part over bars 5-12 of the first 16 bars of POP909 test songs (bass, flute, drums, guitar), the
idiom limits off and on: notes per bar, notes per onset, notes sounding at once, register, median length.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.evaluate.music import hide_tracks  # noqa: E402
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
    case = hide_tracks(score, k, m)
    if case is None or not case[1]:
        return None
    before, new, truth, start = case
    tracks = score.tracks(include_empty=True)
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


class _Switch:
    """Today's rules on or off: the sampling limits (core.idiom via GrammarState.limit_onsets), the part's
    shaping, the placement in tracks (off: every note to the first track of its instrument)."""

    def __init__(self, limits: bool = True, placement: bool = True):
        self.limits, self.placement = limits, placement

    def __enter__(self):
        from core import idiom, tokenizer
        self.saved = (tokenizer.GrammarState.limit_onsets, idiom.shape_part, voices.place_notes, voices.untangle)
        if not self.limits:
            tokenizer.GrammarState.limit_onsets = lambda self, caps=None, ranges=None: None
            idiom.shape_part = lambda notes, instrument: notes
        if not self.placement:
            voices.place_notes = lambda tracks, new, start, end=None: [None] * len(new)
            voices.untangle = lambda notes, fixed=(): notes
        return self

    def __exit__(self, *exc):
        from core import idiom, tokenizer
        (tokenizer.GrammarState.limit_onsets, idiom.shape_part, voices.place_notes, voices.untangle) = self.saved


def _gen():
    from core.generate import Generator
    from core.paths import base_model
    return Generator.load(str(base_model()))


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def bass(args) -> None:
    """Add part on the first 16 bars of POP909 test songs, over bars 5-12."""
    from collections import Counter
    from statistics import median

    from core import idiom
    from core.generate import SamplingConfig
    from core.infill import add_part
    gen = _gen()
    files = test_files("pop909")[:args.pieces]
    print(f"\nAdd part over bars 5-12 of the first 16 bars of {len(files)} POP909 test songs, {args.variations} "
          f"variations each (means over takes; max: the most of any take)")
    print(f"{'part':28s} {'rules':6s} {'notes/bar':>9s} {'at one onset':>12s} {'max':>4s} {'sounding':>8s} {'max':>4s} "
          f"{'lowest':>6s} {'highest':>7s} {'median beats':>12s}")
    for name, instrument in (("Electric Bass (finger)", (33, False)), ("Flute", (73, False)), ("Drums", (0, True)),
                             ("Acoustic Guitar (nylon)", (24, False))):
        for on in (False, True):
            rows = []
            with _Switch(limits=on):
                for path in files:
                    score = _read(path)
                    bars = score.bar_starts(score.end_tick)
                    if len(bars) < 17:
                        continue
                    piece = score.slice(0, bars[16])
                    stream = add_part(gen, piece, instrument, bars[4], bars[12], variations=args.variations,
                                      sampling=SamplingConfig(seed=args.seed))
                    for out in stream.generate():
                        notes = [n for t in out.tracks() if t.instrument == instrument and t.name in (
                            "Drums", name) for n in t.notes]
                        if not notes:
                            continue
                        onset = Counter(n.start for n in notes)
                        rows.append((len(notes) / 8, _mean(list(onset.values())), max(onset.values()),
                                     idiom.most_at_once(notes), min(n.pitch for n in notes),
                                     max(n.pitch for n in notes), median(n.duration for n in notes) / 480))
            if not rows:
                continue
            col = list(zip(*rows))
            print(f"{name:28s} {'on' if on else 'off':6s} {_mean(col[0]):9.1f} {_mean(col[1]):12.2f} {max(col[2]):4d} "
                  f"{_mean(col[3]):8.1f} {max(col[3]):4d} {min(col[4]):6d} {max(col[5]):7d} {_mean(col[6]):12.2f}")


def density_rows(gen, files, args, on: bool, memory: float | None):
    """Continuations of the first k bars (m bars, v variations): per take, notes per bar against the
    prompt's last 8 bars, the most notes sounding at once, MELODY's top-voice share, invented tracks."""
    from core.generate import SamplingConfig
    from core import idiom
    from collections import Counter

    from core.midi import score_to_bytes
    rows = []
    k, m = args.prompt_bars[0], args.bars
    with _Switch(limits=on, placement=on):
        for path in files:
            score = _read(path)
            bars = score.bar_starts(score.end_tick)
            if len(bars) < k + 1:
                continue
            prompt = score.slice(0, bars[k])
            tail = [n for n in prompt.notes if n.start >= bars[max(0, k - 8)]]
            prompt_density = len(tail) / min(8, k)
            cfg = SamplingConfig(seed=args.seed) if memory is None else SamplingConfig(seed=args.seed, memory=memory)
            stream = gen.stream(prompt, bars=m, variations=args.variations, sampling=cfg)
            takes = [[] for _ in range(args.variations)]
            for item in stream:
                takes[item.variation].append(item.note)
            names = [t.name for t in prompt.tracks()]
            end = bars[min(k + m, len(bars) - 1)]
            true_track = {(n.start, n.pitch): t.name for t in score.tracks() for n in t.notes if bars[k] <= n.start < end}
            for notes in takes:
                out = stream.score(notes)
                saved = [t.name for t in read_midi(score_to_bytes(out))[0].tracks()]
                melody = [n for t in out.tracks() if t.name == "MELODY" for n in t.notes if n.start >= stream.start_tick]
                placed_in = {(n.start, n.pitch): t.name for t in out.tracks() for n in t.notes
                             if n.start >= stream.start_tick}
                matched = [key for key in placed_in if key in true_track]
                rows.append({"ratio": len(notes) / m / max(prompt_density, 1e-9),
                             "at_once": idiom.most_at_once(notes),
                             "prompt_at_once": idiom.most_at_once(tail),
                             "chord_over": max(Counter((n.start, n.instrument) for n in notes).values(), default=0)
                             > max(Counter((n.start, n.instrument) for n in tail).values(), default=0),
                             "top": top_voice_share(melody, notes) if melody else None,
                             "invented": len(saved) - len(names),
                             "matched": len(matched),
                             "same_track": sum(placed_in[key] == true_track[key] for key in matched)})
    return rows


def generate(args) -> None:
    gen = _gen()
    k, m = args.prompt_bars[0], args.bars
    print(f"\nContinuations of the first {k} bars, {m} bars generated, {args.variations} variations, seed {args.seed} "
          f"(density: notes per bar against the prompt's last 8 bars)")
    print(f"{'collection':22s} {'rules':6s} {'memory':>6s} {'takes':>5s} {'ratio median':>12s} {'in 0.5-2x':>9s} "
          f"{'>2x':>5s} {'at once':>7s} {'max':>4s} {'prompt':>6s} {'MELODY top':>10s} {'tracks added':>12s} "
          f"{'true notes hit':>14s} {'in their track':>14s} {'chords > prompt':>15s}")
    from core.sampling_config import DEFAULT_MEMORY
    for collection in ("pop909", "bach"):
        files = test_files(collection)[:args.pieces]
        for on, memory in args.configs:
            rows = density_rows(gen, files, args, on, memory)
            if not rows:
                continue
            ratios = sorted(r["ratio"] for r in rows)
            inside = sum(0.5 <= r <= 2 for r in ratios) / len(ratios)
            over = sum(r > 2 for r in ratios) / len(ratios)
            print(f"{collection:22s} {'on' if on else 'off':6s} {DEFAULT_MEMORY if memory is None else memory:6.2f} "
                  f"{len(rows):5d} {ratios[len(ratios) // 2]:12.2f} {inside:9.0%} {over:5.0%} "
                  f"{_mean([r['at_once'] for r in rows]):7.1f} {max(r['at_once'] for r in rows):4d} "
                  f"{_mean([r['prompt_at_once'] for r in rows]):6.1f} {_mean([r['top'] for r in rows]):10.0%} "
                  f"{sum(r['invented'] for r in rows):12d} {sum(r['matched'] for r in rows):14d} "
                  f"{sum(r['same_track'] for r in rows) / max(1, sum(r['matched'] for r in rows)):14.0%} "
                  f"{_mean([r['chord_over'] for r in rows]):15.0%}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["placement", "generate", "bass"])
    ap.add_argument("--pieces", type=int, default=50)
    ap.add_argument("--prompt-bars", type=int, nargs="+", default=[8, 16, 24])
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--variations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--all", action="store_true", help="generate: also without the memory")
    args = ap.parse_args()
    args.configs = [(False, 0.0), (False, None), (True, 0.0), (True, None)] if args.all else [(False, None), (True, None)]
    if args.what == "generate" and args.prompt_bars == [8, 16, 24]:
        args.prompt_bars = [16]  # as the takes: the first 16 bars
    {"placement": placement, "bass": bass, "generate": generate}[args.what](args)


if __name__ == "__main__":
    main()

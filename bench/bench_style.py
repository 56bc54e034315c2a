"""Style candidates measured against each other on the same data and wall-clock budget (issue 16).

One command (the tables of the README come from it):

    .venv/bin/python bench/bench_style.py --model resources/rwkv7-music-base.pth --corpus data/corpus \
        --heldout oneills1850 --budgets 120 300 600 --threads 2 --json docs/bench_style.json

A candidate names the parts of a style (core/network/style.py), joined by "+", with optional ranks:
`lora` (adapter, rank 8), `offset` (state offset read at every token, full), `offset:o8` (rank 8 per head),
`bias` (LayerNorms, w0, a0, token-shift mixes), `state` (learned initial state, the older style),
`lora+offset+bias+state`, `lora:r4+state`, `lora+state:x3` (every learning rate times 3), `lora:d0` (no dropout;
`dN`: N%), `lora:t2` (transposed by up to 2 semitones), `:k50` / `:c50` (half the windows in another folder
piece's key / cropped from a random bar), `:a60` (the running mean of the weights from 60% of the steps) ...
and, for reference, `model:lora` / `model:full`: a new merged model from the LoRA (rank 16) or full fine-tuning
modes. Every candidate trains with core.training.train.run_training (`--mode style`, `--time-budget`) on the same folder,
seed and threads.

Tables:
1. The held-out collection (--heldout: its training pieces are the folder, its test pieces the test): bits per
   note before and after, per candidate and budget, with the steps done and the step kept (a tenth of the folder
   validates and the result is the best validation point, as in the product), wall and CPU seconds, file size.
2. By position from each test piece's start, whole pieces through the recurrent state, bits per token, base
   against each candidate at the largest budget. A style that lasts gains in every bucket, none below half
   of its whole-piece gain ("lasts").
3. A user-sized case: --user-pieces pieces of one collection (--user-kind) as the folder, the rest of that
   collection (at most --user-test-pieces) as the test, at --user-budget seconds.
4. Continuations from the same prompts and seeds with and without each style (largest budget): how close the
   pitch-class, inter-onset and velocity histograms of what is generated come to the folder's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.corpus import Corpus, link_folder  # noqa: E402
from core.training import data as D  # noqa: E402
from core.evaluate import music as MM  # noqa: E402
from core.evaluate.tables import jsonable, print_table  # noqa: E402
from core.evaluate.bits import nats_to_bits  # noqa: E402
from core.evaluate.scoring import POSITION_EDGES, PieceSet, torch_window_bits  # noqa: E402
from core.generate import Generator, SamplingConfig  # noqa: E402
from core.midi import MidiReadError, read_midi  # noqa: E402
from core.network.checkpoint import load_checkpoint, model_fingerprint, read_checkpoint_meta  # noqa: E402
from core.score import TICKS_PER_BEAT  # noqa: E402
from core.network.style import StyledModel, load_style, parse_parts  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.training.train import run_training  # noqa: E402
from core.training.train_config import DEFAULT_LR, TrainConfig  # noqa: E402

DEFAULT_CANDIDATES = ("state", "lora", "offset", "bias", "offset+state", "lora+state", "lora+offset+bias+state")


def amount(args, budget: float) -> str:
    return f"{args.steps} steps" if args.steps else f"{budget:g} s"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- candidates ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    name: str
    mode: str                    # style | lora | full
    parts: str = ""
    style_rank: int | None = None
    offset_rank: int | None = None
    lr_scale: float = 1.0        # times the mode's default learning rates (every part's)
    transpose: int = 0           # > 0: train with augmentation, transposing by up to this many semitones
    dropout: float | None = None  # None: the mode's default
    weight_decay: float | None = None  # on the LoRA matrices; None: TrainConfig's
    min_lr_ratio: float | None = None  # where the cosine ends, times the peak; None: TrainConfig's
    average_from: float | None = None  # validate the running average of the weights from this share of the steps
    crop_share: float | None = None  # share of windows cropped from a random bar of their piece; None: the mode's
    key_augment: float | None = None  # share of windows moved into another folder piece's key; None: the mode's

    @classmethod
    def parse(cls, text: str) -> "Candidate":
        if text.startswith("model:"):
            mode = text.split(":", 1)[1]
            if mode not in ("lora", "full"):
                raise SystemExit(f"unknown reference candidate {text!r}: model:lora or model:full")
            return cls(text, mode)
        parts, settings = [], {}
        for item in text.split("+"):
            name, *opts = item.split(":")
            parts.append(name)
            for o in opts:
                try:
                    field_name, convert, _ = CANDIDATE_OPTIONS[o[:1]]
                    settings[field_name] = convert(o[1:])
                except (KeyError, ValueError):
                    raise SystemExit(f"candidate {text!r}: unknown option {o!r} (" + ", ".join(
                        f"{k}: {help_}" for k, (_, _, help_) in CANDIDATE_OPTIONS.items()) + ")") from None
        try:
            canonical = "+".join(parse_parts(parts))
        except ValueError as e:
            raise SystemExit(f"candidate {text!r}: {e}") from None
        return cls(text, "style", canonical, **settings)


# a candidate's options: letter -> (Candidate field, value of the text after the letter, help)
CANDIDATE_OPTIONS = {
    "r": ("style_rank", int, "LoRA rank N"),
    "o": ("offset_rank", int, "offset rank N"),
    "x": ("lr_scale", float, "learning rates times F"),
    "t": ("transpose", int, "transpose by up to N semitones"),
    "d": ("dropout", lambda n: int(n) / 100, "dropout N% (d0: none)"),
    "w": ("weight_decay", float, "weight decay F"),
    "m": ("min_lr_ratio", float, "the rate ends at F x peak"),
    "k": ("key_augment", lambda n: int(n) / 100, "N% of windows in another folder piece's key"),
    "a": ("average_from", lambda n: int(n) / 100, "average the weights from N% of the steps"),
    "c": ("crop_share", lambda n: int(n) / 100, "N% of windows from a random bar"),
}


# --- scoring -----------------------------------------------------------------------------------------------
@torch.no_grad()
def position_bits(model, pieces: list[list[int]], device: str,
                  chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Bits and token counts per position bucket (POSITION_EDGES) over whole pieces through the recurrent
    state, as the model is (a network, or a StyledModel: its style's offset and initial state included)."""
    edges = [*POSITION_EDGES, 10 ** 9]
    sums, counts = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1, dtype=np.int64)
    for ids in pieces:
        seq = torch.tensor(ids, device=device)
        state, bits = None, []
        for begin in range(0, len(ids) - 1, chunk):
            inp = seq[begin:min(begin + chunk, len(ids) - 1)]
            logits, state = model(inp[None], state=state, return_state=True)
            bits.append(F.cross_entropy(logits[0].float(), seq[begin + 1:begin + 1 + len(inp)], reduction="none"))
        bits = nats_to_bits(torch.cat(bits)).cpu().numpy()
        for b, (lo, hi) in enumerate(zip(edges, edges[1:])):
            sums[b] += float(bits[lo:hi].sum())
            counts[b] += len(bits[lo:hi])
    return sums, counts


def bucket_label(b: int) -> str:
    edges = [*POSITION_EDGES, None]
    lo, hi = edges[b], edges[b + 1]
    return f"{lo}-{hi - 1}" if hi is not None else f"{lo}-"


def score(model, tests: PieceSet, tok, batch: int, device: str) -> dict:
    return tests.summary(torch_window_bits(lambda idx: model(idx), tests.windows, tok.pad_id, batch, device))


# --- training ----------------------------------------------------------------------------------------------
def train(cand: Candidate, args, folder: Path, out: Path, budget: float, cache: Path) -> dict:
    """Train one candidate for `budget` seconds (with --steps: that many steps) -> result path, steps, wall
    and CPU seconds, file size."""
    shutil.rmtree(out, ignore_errors=True)
    # the product's own settings: a tenth of the folder (at most 128 windows) validates, the best point is kept
    cfg = TrainConfig(data=str(folder), out=str(out), base=args.model, mode=cand.mode, ctx_len=args.ctx,
                      batch_size=args.batch, seed=args.seed, device=args.device, threads=args.threads, workers=args.workers,
                      cache_dir=str(cache), time_budget_s=None if args.steps else budget, steps=args.steps)
    if cand.mode == "style":
        cfg.style_parts, cfg.style_rank, cfg.offset_rank = cand.parts, cand.style_rank, cand.offset_rank
        if cand.lr_scale != 1.0:
            cfg.lr = DEFAULT_LR["style"] * cand.lr_scale
        if cand.transpose:
            cfg.augment, cfg.max_transpose = True, cand.transpose
        cfg.dropout = cand.dropout
        if cand.weight_decay is not None:
            cfg.weight_decay = cand.weight_decay
        if cand.min_lr_ratio is not None:
            cfg.min_lr_ratio = cand.min_lr_ratio
        cfg.key_augment = cand.key_augment
        cfg.average_from = cand.average_from
        cfg.crop_share = cand.crop_share
    marks = {"step": 0, "t0": None}

    def emit(e) -> None:
        if e.kind == "step":
            marks["step"] = max(marks["step"], e.step)
            if marks["t0"] is None:
                marks["t0"] = time.monotonic()

    def over_time() -> bool:  # a hard stop in case the schedule's estimate runs long
        return not args.steps and marks["t0"] is not None and time.monotonic() - marks["t0"] > 1.1 * budget + 5

    t0, c0 = time.monotonic(), time.process_time()
    paths = run_training(cfg, emit, over_time)
    wall = time.monotonic() - (marks["t0"] or t0)
    return {"result": paths["result"], "steps": marks["step"], "kept_step": read_checkpoint_meta(paths["result"])["step"],
            "wall_s": wall, "cpu_s": time.process_time() - c0, "file_bytes": os.path.getsize(paths["result"])}


class Evaluated:
    """The base model loaded once; each candidate's result is applied to it (styles: `styled`, the base's one
    StyledModel) or loaded (models)."""

    def __init__(self, model_path: str, device: str) -> None:
        self.base, self.meta = load_checkpoint(model_path, device=device)
        self.styled = StyledModel(self.base)
        self.device = device

    def model_for(self, cand: Candidate, result: str):
        """The styled base (a StyledModel) for a style, else the candidate's own model."""
        if cand.mode == "style":
            self.styled.apply(load_style(result, self.styled))
            return self.styled
        self.styled.remove()
        return load_checkpoint(result, device=self.device)[0]

    def done(self) -> None:
        self.styled.remove()


# --- continuations -----------------------------------------------------------------------------------------
def folder_histograms(paths: list[Path]) -> dict:
    pitch, ioi, vel = np.zeros(12), None, None
    for p in paths:
        try:
            s, _ = read_midi(str(p))
        except (MidiReadError, OSError):
            continue
        notes = s.notes
        pitch = pitch + MM.pitch_class_histogram(notes) * len(notes)
        h_ioi, h_vel = MM.ioi_histogram(notes, TICKS_PER_BEAT) * len(notes), MM.velocity_histogram(notes) * len(notes)
        ioi = h_ioi if ioi is None else ioi + h_ioi
        vel = h_vel if vel is None else vel + h_vel
    return {"pitch": pitch, "ioi": ioi, "velocity": vel}


def continuations(gen_model, tok, prompts, args) -> list:
    """The generated notes for each (prompt score, split tick), one seed per prompt. `gen_model`: a network or a
    StyledModel (the network with its style, without the style's folder memory: the style alone is measured)."""
    gen = Generator(gen_model, tok, threads=1)
    gen.folder_memory = None
    out = []
    for i, (prompt, split) in enumerate(prompts):
        stream = gen.stream(prompt, bars=args.gen_bars, at_tick=split,
                            sampling=SamplingConfig(temperature=1.0, top_p=0.95, seed=args.seed + i))
        out.append([item.note for item in stream])
    return out


def histogram_overlaps(generated: list, reference: dict) -> dict:
    pooled = [n for notes in generated for n in notes]
    if not pooled:
        return {"pitch": 0.0, "ioi": 0.0, "velocity": 0.0, "notes": 0}
    # rhythm per continuation (gaps never span two continuations), pooled weighted by notes
    ioi = sum(MM.ioi_histogram(notes, TICKS_PER_BEAT) * len(notes) for notes in generated if notes)
    return {"pitch": MM.histogram_overlap(MM.pitch_class_histogram(pooled), reference["pitch"]),
            "ioi": MM.histogram_overlap(ioi, reference["ioi"]),
            "velocity": MM.histogram_overlap(MM.velocity_histogram(pooled), reference["velocity"]),
            "notes": len(pooled)}


# --- output ------------------------------------------------------------------------------------------------
# --- the run -----------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "resources" / "rwkv7-music-base.pth"), help="the base model")
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus"), help="folder with manifest.json")
    p.add_argument("--heldout", default="oneills1850", help="a collection held out of the base model's pretraining")
    p.add_argument("--budgets", type=float, nargs="+", default=[120, 300, 600], help="seconds of training each")
    p.add_argument("--steps", type=int, help="train every candidate this many steps instead of a time budget "
                                             "(a shared, noisy machine); one 'budget' then")
    p.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="tokenizer processes")
    p.add_argument("--max-test-pieces", type=int, default=50)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--user-kind", help="collection of the user-sized case (default: --heldout)")
    p.add_argument("--user-pieces", type=int, default=20)
    p.add_argument("--user-test-pieces", type=int, default=100)
    p.add_argument("--user-budget", type=float, help="seconds (default: the smallest budget); 0 skips the case")
    p.add_argument("--prompts", type=int, default=8, help="continuation prompts (0 skips table 4)")
    p.add_argument("--prompt-bars", type=int, default=4)
    p.add_argument("--gen-bars", type=int, default=8)
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_style"), help="scratch folder (links, runs)")
    p.add_argument("--json", help="save every table here")
    args = p.parse_args(argv)
    args.candidates = [Candidate.parse(c) for c in args.candidates]
    args.budgets = sorted(args.budgets) if not args.steps else [0.0]
    if args.user_budget is None:
        args.user_budget = args.budgets[0] if not args.steps else 1.0  # with --steps: on, that many steps
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    corpus = Corpus.load(args.corpus)
    held = args.heldout
    if held not in corpus.collections():
        raise SystemExit(f"collection {held!r} is not in the corpus ({', '.join(sorted(corpus.collections()))})")
    work, cache = Path(args.work), Path(args.work) / "token_cache"
    work.mkdir(parents=True, exist_ok=True)
    # every run and every score reads this copy: a base model file replaced meanwhile cannot mix two models
    frozen = work / "base.pth"
    shutil.copyfile(args.model, frozen)
    args.model_given, args.model = args.model, str(frozen)
    ev = Evaluated(args.model, args.device)
    tok = Tokenizer.from_dict(ev.meta["tokenizer"]) if "tokenizer" in ev.meta else Tokenizer()
    results: dict = {"command": " ".join(sys.argv), "model": args.model_given, "heldout": held,
                     "model_fingerprint": model_fingerprint(ev.styled)}

    def tokenized(name: str, files: list[str]) -> list[D.Piece]:
        pieces, report = D.scan_folder(link_folder(corpus, files, work / name), tok, cache_dir=cache,
                                       workers=args.workers)
        for s in report.skipped:
            log(f"  {name}: skipped {s['path']}: {s['reason']}")
        return pieces

    train_files = corpus.files(("train",), only=held)
    test_files = corpus.files(("test",), only=held)[:args.max_test_pieces] or \
        corpus.files(("validation",), only=held)[:args.max_test_pieces]
    folder = link_folder(corpus, train_files, work / "folder")
    test = tokenized("test", test_files)
    tests = PieceSet.build([p.path for p in test], [p.tokens for p in test], tok, args.ctx)
    before = score(ev.base, tests, tok, args.eval_batch, args.device)
    base_pos = position_bits(ev.base, tests.ids, args.device)

    # 1 and 2: every candidate at every budget on the held-out collection
    rows, profiles, styled = [{"candidate": "base model", **before}], {}, {}
    for budget in args.budgets:
        for cand in args.candidates:
            log(f"training {cand.name} for {amount(args, budget)}")
            run = train(cand, args, folder, work / "runs" / f"{cand.name.replace(':', '_')}-{budget:g}", budget, cache)
            model = ev.model_for(cand, run["result"])
            after = score(model, tests, tok, args.eval_batch, args.device)
            row = {"candidate": cand.name, "budget_s": None if args.steps else budget, **run, **after,
                   "reduction": 1 - after["bits_per_note"] / before["bits_per_note"]}
            if budget == args.budgets[-1]:
                profiles[cand.name] = position_bits(model, tests.ids, args.device)
                styled[cand] = run["result"]
            ev.done()
            rows.append(row)
            log(f"  {cand.name}: {after['bits_per_note']:.3f} bits/note ({-row['reduction']:+.1%}), "
                f"{run['steps']} steps, {run['file_bytes'] / 1024:.0f} KiB")
    print_table(f"1. Held-out collection {held!r}: {len(train_files)} pieces as the folder, {len(test)} test pieces "
                f"({tests.total_notes} notes); {args.threads} threads, device {args.device}", rows,
                [("candidate", "candidate", "s"), ("budget s", "budget_s", ".0f"), ("bits/note", "bits_per_note", ".3f"),
                 ("change", "reduction", "+.1%"), ("steps", "steps", "d"), ("kept", "kept_step", "d"),
                 ("wall s", "wall_s", ".0f"),
                 ("CPU s", "cpu_s", ".0f"), ("file bytes", "file_bytes", "d")])
    results["heldout_table"] = rows

    base_sums, counts = base_pos
    pos_rows, lasting = [], {}
    for b in range(len(counts)):
        if counts[b]:
            r = {"positions": bucket_label(b), "tokens": int(counts[b]), "base": base_sums[b] / counts[b]}
            for name, (sums, _) in profiles.items():
                r[name] = 1 - sums[b] / base_sums[b]
            pos_rows.append(r)
    for name, (sums, _) in profiles.items():
        whole = 1 - sums.sum() / base_sums.sum()
        gains = [1 - sums[b] / base_sums[b] for b in range(len(counts)) if counts[b]]
        lasting[name] = {"whole_piece": whole, "lasts": bool(whole > 0 and all(g >= 0.5 * whole for g in gains))}
    pos_rows.append({"positions": "whole pieces", "tokens": int(counts.sum()), "base": base_sums.sum() / counts.sum(),
                     **{n: v["whole_piece"] for n, v in lasting.items()}})
    print_table(f"2. By position from the piece's start (whole pieces through the recurrent state): base bits per "
                f"token and each candidate's change, {amount(args, args.budgets[-1])} of training", pos_rows,
                [("positions", "positions", "s"), ("tokens", "tokens", "d"), ("base", "base", ".3f")]
                + [(n, n, "+.1%") for n in profiles])
    print("lasts (a gain in every bucket, none below half the whole-piece gain): "
          + ", ".join(f"{n} {'yes' if v['lasts'] else 'no'}" for n, v in lasting.items()))
    results["by_position"], results["lasting"] = pos_rows, lasting

    # 3: the user-sized case
    if args.user_budget:
        kind = args.user_kind or held
        files = corpus.files(("train", "validation", "test"), only=kind)
        rng = random.Random(args.seed)
        rng.shuffle(files)
        user_folder = link_folder(corpus, sorted(files[:args.user_pieces]), work / "user_folder")
        user_test = tokenized("user_test", sorted(files[args.user_pieces:args.user_pieces + args.user_test_pieces]))
        user_tests = PieceSet.build([p.path for p in user_test], [p.tokens for p in user_test], tok, args.ctx)
        user_before = score(ev.base, user_tests, tok, args.eval_batch, args.device)
        user_rows = [{"candidate": "base model", **user_before}]
        for cand in args.candidates:
            log(f"user case: training {cand.name} for {amount(args, args.user_budget)}")
            run = train(cand, args, user_folder, work / "runs" / f"user-{cand.name.replace(':', '_')}",
                        args.user_budget, cache)
            after = score(ev.model_for(cand, run["result"]), user_tests, tok, args.eval_batch, args.device)
            ev.done()
            user_rows.append({"candidate": cand.name, **run, **after,
                              "reduction": 1 - after["bits_per_note"] / user_before["bits_per_note"]})
        print_table(f"3. User-sized case: {args.user_pieces} pieces of {kind!r} as the folder, {len(user_test)} other "
                    f"pieces of it as the test ({user_tests.total_notes} notes), {amount(args, args.user_budget)} each",
                    user_rows, [("candidate", "candidate", "s"), ("bits/note", "bits_per_note", ".3f"),
                                ("change", "reduction", "+.1%"), ("steps", "steps", "d"), ("kept", "kept_step", "d"),
                                ("wall s", "wall_s", ".0f"), ("file bytes", "file_bytes", "d")])
        results["user_case"] = {"kind": kind, "rows": user_rows}

    # 4: continuations with and without each style, same prompts and seeds
    if args.prompts:
        prompts = []
        for rel in test_files:
            if len(prompts) >= args.prompts:
                break
            s, _ = read_midi(str(corpus.root / rel))
            bars = s.bar_starts()
            if len(bars) > args.prompt_bars + 1:
                split = bars[args.prompt_bars]
                prompts.append((s.slice(0, split), split))
        reference = folder_histograms([corpus.root / f for f in train_files[:300]])
        ev.done()
        cont_rows = [{"candidate": "base model", **histogram_overlaps(continuations(ev.base, tok, prompts, args),
                                                                       reference)}]
        for cand, result in styled.items():
            model = ev.model_for(cand, result)
            cont_rows.append({"candidate": cand.name, **histogram_overlaps(continuations(model, tok, prompts, args),
                                                                           reference)})
            ev.done()
        print_table(f"4. Continuations ({len(prompts)} prompts of {args.prompt_bars} bars from the test pieces, "
                    f"{args.gen_bars} bars each, temperature 1.0, top-p 0.95, the same seeds): overlap of the "
                    f"generated notes' histograms with the folder's (1 = the same shape)", cont_rows,
                    [("candidate", "candidate", "s"), ("pitch class", "pitch", ".3f"), ("rhythm (IOI)", "ioi", ".3f"),
                     ("velocity", "velocity", ".3f"), ("notes", "notes", "d")])
        results["continuations"] = cont_rows

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(jsonable(results), indent=1))
        log(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

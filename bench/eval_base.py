"""Evaluation of the base model: one command that prints the tables (and saves them with --json).

The whole procedure, from a corpus built by tools/make_corpus.py:

    # 1. the pretraining folder: the training split without the held-out collection (links, no copies)
    .venv/bin/python bench/eval_base.py --corpus data/corpus --heldout oneills1850 --link-train data/pretrain
    # 2. pretrain with the project's own command (its resume.pt beside model.pth gives this script the schedule)
    .venv/bin/python -m core.cli train data/pretrain --out runs/base ...   (or: rwkv-music train ...)
    # 3. every table; sections can also run alone (--sections 1 3 ...)
    .venv/bin/python bench/eval_base.py --model runs/base/model.pth --corpus data/corpus --heldout oneills1850 \
        --deepembed --render 3 --json docs/eval_base.json

The corpus folder holds the MIDI files and tools/make_corpus.py's manifest.json, whose `split` of each file
(train / validation / test) is used as is. The held-out collection (--heldout) is left out of sections 1-3
and is what section 4 fine-tunes on. Sections:

1. Test-set bits per note: the model against baselines trained here on the same training split: n-gram
   models (interpolated modified Kneser-Ney, bench/ngram.py, counted on whole training pieces) and a causal
   Transformer of about the same parameter count, trained with the RWKV run's schedule (ctx, batch, steps,
   AdamW and learning-rate schedule from the resume.pt beside --model when there is one, else from the
   flags) for the same number of steps (--budget-tokens sets another budget in training tokens, e.g. to
   save time; the printout then says that the budgets differ). Scoring rule: bench/scoring.py (every
   token scored once, windows of ctx tokens that start at bars with the tokenizer's header). An extra row
   scores the RWKV model on whole pieces through its recurrent state (no windows).
2. DeepEmbed off / on: two models of the same size trained from the same seed for the same steps with
   core.train.run_training, compared on the validation split.
3. Continuations: for N test pieces the first k bars are the prompt, core.generate continues m bars, and
   the result is compared with the true m bars (bench/music_metrics.py); a "repeat the prompt's last m
   bars" row gives a reference point. Every output is checked: its tokens decode without invalid ids and
   write_midi + read_midi round-trip it.
4. Fine-tuning on the held-out collection: bits per note on its test pieces before and after each mode
   (state, LoRA, full), each trained on its training pieces for --ft-seconds of wall-clock time on this
   machine (or --ft-steps), through core.train.run_training. For the state (style) mode a second table
   shows where it helps: bits per token by position from each test piece's start, base vs style, scored
   whole-piece through the recurrent state.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import music_metrics as MM  # noqa: E402
from bench.ngram import KneserNeyNGram  # noqa: E402
from bench.scoring import LN2, PieceSet, ngram_window_bits, torch_window_bits  # noqa: E402
from bench.transformer import (CausalTransformer, Schedule, matched_config, parameter_count,  # noqa: E402
                               train_causal_lm)
from core import data as D  # noqa: E402
from core.model import ModelConfig, RWKV7, load_checkpoint, load_state_file, save_checkpoint  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.train import DEFAULT_LR, RESUME_FILE, TrainConfig, run_training, sequence_nll_bits  # noqa: E402

SECTIONS = (1, 2, 3, 4)


# --- the corpus: manifest splits as folders of links -------------------------------------------------
@dataclass
class Corpus:
    root: Path
    entries: list[dict]

    @classmethod
    def load(cls, root: str | Path) -> "Corpus":
        root = Path(root)
        manifest = root / "manifest.json"
        if not manifest.exists():
            raise SystemExit(f"{manifest} not found: build the corpus with tools/make_corpus.py first")
        return cls(root, json.loads(manifest.read_text())["pieces"])

    def files(self, splits: tuple[str, ...], *, only: str | None = None, without: str | None = None) -> list[str]:
        """Files of the splits, taken in turn from each collection (so the first N of them span the corpus)."""
        by_collection: dict[str, list[str]] = {}
        for e in self.entries:
            if e["split"] in splits and (only is None or e["collection"] == only) \
                    and (without is None or e["collection"] != without) and (self.root / e["file"]).is_file():
                by_collection.setdefault(e["collection"], []).append(e["file"])
        groups = [by_collection[c] for c in sorted(by_collection)]
        return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]

    def collection_of(self, file: str) -> str:
        return next((e["collection"] for e in self.entries if e["file"] == file), "?")

    def collections(self) -> set[str]:
        return {e["collection"] for e in self.entries}


def link_folder(corpus: Corpus, files: list[str], dest: Path) -> Path:
    """A folder of symbolic links to `files` (relative paths kept), for the training loop to scan. An existing
    folder is replaced only if it holds nothing but links (one this command made), never real files."""
    if dest.exists():
        real = [f for f in dest.rglob("*") if not f.is_symlink() and not f.is_dir()]
        if real or not dest.is_dir():
            raise SystemExit(f"{dest} exists and holds real files: choose another folder")
        shutil.rmtree(dest)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink((corpus.root / rel).resolve(), target)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


@dataclass
class Run:
    """What every section shares: arguments, tokenizer, corpus, work folders, loaded sets."""
    args: argparse.Namespace
    tokenizer: Tokenizer
    corpus: Corpus
    work: Path
    cache: Path
    _sets: dict = field(default_factory=dict)

    def pieces(self, name: str, splits: tuple[str, ...], *, only=None, without=None, limit=None) -> list[D.Piece]:
        """Tokenized pieces of a split (cached per name); the folder of links stays for training runs."""
        if name not in self._sets:
            files = self.corpus.files(splits, only=only, without=without)
            if limit:
                files = files[:limit]
            folder = link_folder(self.corpus, files, self.work / name)
            pieces, report = D.scan_folder(folder, self.tokenizer, cache_dir=self.cache, workers=self.args.workers)
            for s in report.skipped:
                log(f"  {name}: skipped {s['path']}: {s['reason']}")
            self._sets[name] = pieces
        return self._sets[name]

    def folder(self, name: str) -> Path:
        return self.work / name

    @property
    def device(self) -> str:
        d = self.args.device
        return ("cuda" if torch.cuda.is_available() else "cpu") if d == "auto" else d


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- models ------------------------------------------------------------------------------------------
def load_model(path: str, device: str) -> tuple[RWKV7, dict]:
    model, meta = load_checkpoint(path, device=device)
    if "tokenizer" in meta:
        Tokenizer.from_dict(meta["tokenizer"])  # refuses another vocabulary
    return model, meta


def rwkv_logits_fn(model: RWKV7, wkv: torch.Tensor | None = None):
    if wkv is None:
        return lambda idx: model(idx)
    return lambda idx: model(idx, state=model.init_state(idx.shape[0], wkv=wkv))


def model_schedule(model_path: str, meta: dict, args) -> tuple[Schedule, str]:
    """The training schedule of the RWKV model: its resume.pt's config if present, else meta + flags."""
    resume = Path(model_path).with_name(RESUME_FILE)
    if resume.exists():
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        cfg = TrainConfig.from_dict(ckpt["config"])
        steps = int(ckpt.get("total_steps") or ckpt.get("step") or 1)
        return Schedule(steps=steps, batch_size=cfg.batch_size, ctx_len=cfg.ctx_len,
                        lr=cfg.lr if cfg.lr is not None else DEFAULT_LR["scratch"], warmup_steps=cfg.warmup_steps,
                        min_lr_ratio=cfg.min_lr_ratio, weight_decay=cfg.weight_decay, beta1=cfg.beta1,
                        beta2=cfg.beta2, grad_clip=cfg.grad_clip, seed=cfg.seed), str(resume)
    training = meta.get("training", {})
    ctx = args.ctx or int(training.get("ctx_len", 512))
    steps = args.steps or int(training.get("total_steps", 0) or meta.get("step", 0)) or 1000
    batch = args.batch or int(training.get("batch_size", 8))
    lr = args.lr or float(training.get("lr") or DEFAULT_LR["scratch"])
    return Schedule(steps=steps, batch_size=batch, ctx_len=ctx, lr=lr, seed=args.seed), "checkpoint meta + flags"


def training_overlap(meta: dict, test: list[D.Piece]) -> int | None:
    """How many test pieces are in the folder the model says it was trained on (None: folder unknown)."""
    folder = meta.get("training", {}).get("data")
    if not folder or not Path(folder).exists():
        return None
    import hashlib
    digests = set()
    for f in D.find_midi_files(folder):
        try:
            digests.add(hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest())
        except OSError:
            continue
    return sum(p.digest in digests for p in test)


def mean_window_tokens(pieces: list[D.Piece], tokenizer, ctx_len: int) -> float:
    """Scored tokens per training window (what one batch row contributes to the budget)."""
    windows = D.make_windows(pieces, tokenizer, ctx_len)
    sizes = [min(len(w.header) + w.end - w.start - 1, ctx_len) for w in windows]
    return float(np.mean(sizes)) if sizes else 0.0


# --- section 1 ---------------------------------------------------------------------------------------
def section_bits(run: Run) -> dict:
    args, tok = run.args, run.tokenizer
    model, meta = load_model(args.model, run.device)
    schedule, schedule_source = model_schedule(args.model, meta, args)
    train = run.pieces("train", ("train",), without=args.heldout)
    test = run.pieces("test", ("test",), without=args.heldout, limit=args.max_test_pieces)
    if not test:
        raise SystemExit("no test pieces outside the held-out collection")
    tests = PieceSet.build([p.path for p in test], [p.tokens for p in test], tok, schedule.ctx_len)
    labels = [run.corpus.collection_of(p.path) for p in test]
    overlap = training_overlap(meta, test)
    if overlap:
        log(f"WARNING: {overlap} of the {len(test)} test pieces are in the model's training folder "
            f"({meta['training']['data']}): its test figures are not honest")
    rows = []
    rwkv_params = parameter_count(model)
    tokens_per_row = mean_window_tokens(train, tok, schedule.ctx_len)
    rwkv_budget = schedule.steps * schedule.batch_size * tokens_per_row

    t0 = time.perf_counter()
    bits = torch_window_bits(rwkv_logits_fn(model), tests.windows, tok.pad_id, args.eval_batch, run.device)
    rows.append({"model": f"RWKV-7 {model.config.n_layer}x{model.config.n_embd}", "params": rwkv_params,
                 "train_tokens": rwkv_budget, **tests.summary(bits), "eval_s": time.perf_counter() - t0,
                 "by_collection": tests.by_group(bits, labels)})
    t0 = time.perf_counter()
    whole = sum(sequence_nll_bits(model, ids) for ids in tests.ids)
    rows.append({"model": "RWKV-7, whole pieces (recurrent)", "params": rwkv_params, "train_tokens": rwkv_budget,
                 "bits_per_note": whole / max(tests.total_notes, 1),
                 "bits_per_token": whole / max(sum(len(s) - 1 for s in tests.ids), 1),
                 "eval_s": time.perf_counter() - t0})

    for order in args.ngram_orders:
        t0 = time.perf_counter()
        ngram = KneserNeyNGram(order, tok.vocab_size, tok.pad_id).fit(p.tokens for p in train)
        fit_s = time.perf_counter() - t0
        bits = ngram_window_bits(ngram, tests.windows)
        rows.append({"model": f"{order}-gram, modified Kneser-Ney", "params": sum(len(o.grams) for o in ngram.orders),
                     "train_tokens": ngram.trained_tokens, "train_s": fit_s, **tests.summary(bits),
                     "eval_s": time.perf_counter() - t0 - fit_s, "by_collection": tests.by_group(bits, labels)})

    budget_note = ""
    if not args.skip_transformer:
        tf_schedule = Schedule(**schedule.to_dict())
        if args.budget_tokens:
            tf_schedule.steps = max(1, round(args.budget_tokens / (schedule.batch_size * max(tokens_per_row, 1))))
        budget_note = "same steps as the RWKV run" if tf_schedule.steps == schedule.steps else \
            f"NOT the RWKV run's budget: {tf_schedule.steps} steps against its {schedule.steps}"
        torch.manual_seed(schedule.seed)
        cfg = matched_config(rwkv_params, tok.vocab_size, model.config.n_embd, schedule.ctx_len)
        tf = CausalTransformer(cfg)
        every = max(1, tf_schedule.steps // 10)
        log(f"training the Transformer baseline ({cfg.n_layer}x{cfg.n_embd}, {parameter_count(tf)} parameters, "
            f"{tf_schedule.steps} steps; {budget_note})")
        stats = train_causal_lm(tf, train, tok, tf_schedule, run.device,
                                log=lambda s, loss: s % every == 0 and log(f"  step {s}: loss {loss:.4f}"))
        t0 = time.perf_counter()
        bits = torch_window_bits(tf, tests.windows, tok.pad_id, args.eval_batch, run.device)
        rows.append({"model": f"Transformer {cfg.n_layer}x{cfg.n_embd} (pre-LN)", "params": parameter_count(tf),
                     "train_tokens": stats["tokens"], "train_s": stats["seconds"], **tests.summary(bits),
                     "eval_s": time.perf_counter() - t0, "by_collection": tests.by_group(bits, labels)})

    collections = sorted(set(labels))
    by_collection = [{"model": r["model"], **{c: v for c, v in r.pop("by_collection", {}).items()}} for r in rows
                     if "by_collection" in r]
    print_table(f"1. Test-set bits per note ({len(test)} test pieces, {tests.total_notes} notes, "
                f"ctx {schedule.ctx_len}, {tests.cut_windows} cut windows)",
                rows, [("model", "model", "s"), ("params", "params", ",d"), ("train tokens", "train_tokens", ",.0f"),
                       ("bits/note", "bits_per_note", ".3f"), ("bits/token", "bits_per_token", ".4f"),
                       ("train s", "train_s", ".0f"), ("eval s", "eval_s", ".1f")])
    print(f"schedule from {schedule_source}: {schedule.steps} steps, batch {schedule.batch_size}, "
          f"ctx {schedule.ctx_len}, lr {schedule.lr:g}" + (f"; Transformer: {budget_note}" if budget_note else "")
          + "; n-gram params = stored n-gram types")
    print_table("Bits per note by collection", by_collection,
                [("model", "model", "s")] + [(c, c, ".3f") for c in collections])
    return {"rows": rows, "by_collection": by_collection, "schedule": schedule.to_dict(),
            "schedule_source": schedule_source, "test_pieces_in_training_folder": overlap,
            "transformer_budget": budget_note}


# --- section 2 ---------------------------------------------------------------------------------------
def section_deepembed(run: Run) -> dict:
    args, tok = run.args, run.tokenizer
    run.pieces("train", ("train",), without=args.heldout)
    val = run.pieces("validation", ("validation",), without=args.heldout, limit=args.max_test_pieces)
    if not val:
        val = run.pieces("test", ("test",), without=args.heldout, limit=args.max_test_pieces)
        log("no validation pieces: section 2 scores the test pieces")
    vals = PieceSet.build([p.path for p in val], [p.tokens for p in val], tok, args.de_ctx)
    rows = []
    for deep in (False, True):
        name = "deepembed" if deep else "plain"
        out = run.work / f"de_{name}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        torch.manual_seed(args.seed)  # the same seed as a from-scratch run of core.train
        base = RWKV7(ModelConfig(n_layer=args.de_layers, n_embd=args.de_width, vocab_size=tok.vocab_size,
                                 deep_embed=deep))
        base_path = out / "init.pth"
        save_checkpoint(base, str(base_path), {"tokenizer": tok.to_dict()})
        cfg = TrainConfig(data=str(run.folder("train")), out=str(out / "run"), base=str(base_path), mode="full",
                          steps=args.de_steps, ctx_len=args.de_ctx, batch_size=args.de_batch,
                          lr=args.lr or DEFAULT_LR["scratch"],
                          val_fraction=0.0, checkpoint_every=10 ** 9, seed=args.seed, device=run.device,
                          cache_dir=str(run.cache), threads=args.threads, workers=args.workers)
        log(f"section 2: training {name} ({args.de_layers}x{args.de_width}, {args.de_steps} steps)")
        t0 = time.perf_counter()
        paths = run_training(cfg)
        train_s = time.perf_counter() - t0
        model, _ = load_model(paths["result"], run.device)
        bits = torch_window_bits(rwkv_logits_fn(model), vals.windows, tok.pad_id, args.eval_batch, run.device)
        tables = sum(b.ffn.s_emb.weight.numel() for b in model.blocks) if deep else 0
        rows.append({"model": f"RWKV-7 {args.de_layers}x{args.de_width}, DeepEmbed {'on' if deep else 'off'}",
                     "params": parameter_count(model), "dense_params": parameter_count(model) - tables,
                     "train_s": train_s, **vals.summary(bits)})
    gain = 1 - rows[1]["bits_per_note"] / rows[0]["bits_per_note"]
    print_table(f"2. DeepEmbed off vs on ({args.de_steps} steps, batch {args.de_batch}, ctx {args.de_ctx}; "
                f"{len(val)} validation pieces)", rows,
                [("model", "model", "s"), ("params", "params", ",d"),
                 ("without s_emb tables", "dense_params", ",d"), ("bits/note", "bits_per_note", ".3f"),
                 ("bits/token", "bits_per_token", ".4f"), ("train s", "train_s", ".0f")])
    print(f"DeepEmbed changes validation bits per note by {-100 * gain:+.1f}%")
    return {"rows": rows, "relative_gain": gain}


# --- section 3 ---------------------------------------------------------------------------------------
def section_continuations(run: Run) -> dict:
    from core.generate import Generator, SamplingConfig
    from core.midi import read_midi, write_midi
    from core.score import TICKS_PER_BEAT, Note

    args, tok = run.args, run.tokenizer
    model, _ = load_model(args.model, run.device)
    gen = Generator(model, tok, ctx=args.gen_ctx, threads=args.threads or 1)  # one-token steps: 1 is fastest
    k, m = args.prompt_bars, args.gen_bars
    files = run.corpus.files(("test",), without=args.heldout)
    rows, reference, checks, pictures = [], [], {"decoded": 0, "invalid_tokens": 0, "midi_round_trips": 0}, []
    tmp = Path(tempfile.mkdtemp(prefix="eval_cont_", dir=run.work))
    for rel in files:
        if len(rows) >= args.prompts:
            break
        score, _ = read_midi(str(run.corpus.root / rel))
        bars = score.bar_starts()
        if len(bars) < k + m + 1:
            continue
        split, stop = bars[k], bars[k + m]
        true = [n for n in score.notes if split <= n.start < stop]
        prompt_notes = [n for n in score.notes if n.start < split]
        if not true or not [n for n in prompt_notes if not n.drum]:
            continue
        stream = gen.stream(score.slice(0, split), bars=m, at_tick=split,
                            sampling=SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                                                    seed=args.seed + len(rows)))
        generated = [item.note for item in stream]
        result = stream.score(generated)
        _, stats = tok.decode(stream.window.ids + stream.tokens[0])
        checks["decoded"] += 1
        checks["invalid_tokens"] += stats.invalid
        path = tmp / f"{len(rows)}.mid"
        write_midi(result, path)
        back, _ = read_midi(str(path))
        checks["midi_round_trips"] += int(len(back.notes) == len(result.notes))
        rows.append({"piece": rel, **MM.compare_continuation(prompt_notes, generated, true, m, TICKS_PER_BEAT)})
        # reference: the prompt's last m bars played again
        lo = bars[k - m] if k >= m else 0
        repeat = [Note(n.start + split - lo, n.duration, n.pitch, n.velocity, n.program, n.drum)
                  for n in prompt_notes if lo <= n.start]
        reference.append(MM.compare_continuation(prompt_notes, repeat, true, m, TICKS_PER_BEAT))
        if len(pictures) < args.render:
            from bench.render_roll import render_roll
            out = ROOT / "docs" / f"eval_continuation_{len(pictures) + 1}.png"
            pictures.append(render_roll(str(out), prompt_notes, generated, true, split_tick=split,
                                        bar_ticks=bars[:k + m + 1], ticks_per_beat=TICKS_PER_BEAT,
                                        title=f"{rel}: {k} bars of prompt, {m} generated"))
    shutil.rmtree(tmp, ignore_errors=True)
    if not rows:
        raise SystemExit(f"no test piece has {k + m + 1} bars with notes")
    mean, mean_ref = MM.mean_metrics(rows), MM.mean_metrics(reference)
    cols = [("", "name", "s"), ("pitch-class overlap", "pitch_class_overlap", ".3f"),
            ("density ratio", "density_ratio", ".2f"), ("notes/bar", "notes_per_bar", ".1f"),
            ("IOI overlap", "ioi_overlap", ".3f"), ("in key", "in_key", ".3f")]
    truth = {"name": "true continuation", "pitch_class_overlap": 1.0, "density_ratio": 1.0,
             "notes_per_bar": mean["true_notes_per_bar"], "ioi_overlap": 1.0, "in_key": mean["true_in_key"]}
    print_table(f"3. Continuations: {len(rows)} test prompts of {k} bars, {m} bars generated "
                f"(temperature {args.temperature}, top-p {args.top_p}); means over prompts",
                [{"name": "RWKV-7 continuation", **mean}, {"name": "repeat the prompt's last bars", **mean_ref}, truth],
                cols)
    valid = checks["invalid_tokens"] == 0 and checks["midi_round_trips"] == checks["decoded"]
    print(f"outputs valid: {'yes' if valid else 'NO'} ({checks['decoded']} decoded, {checks['invalid_tokens']} "
          f"invalid tokens, {checks['midi_round_trips']} MIDI round trips)"
          + (f"; pictures: {', '.join(pictures)}" if pictures else ""))
    return {"mean": mean, "repeat_reference": mean_ref, "per_prompt": rows, "checks": checks, "valid": valid,
            "pictures": pictures}


# --- section 4 ---------------------------------------------------------------------------------------
def _train_timed(cfg: TrainConfig, seconds: float | None) -> tuple[dict, int, float, float]:
    """run_training stopped after `seconds` of wall-clock time -> (paths, steps done, wall s, process CPU s)."""
    steps = [0]
    t0, c0 = time.monotonic(), time.process_time()

    def emit(e) -> None:
        if e.kind == "step":
            steps[0] = e.step

    paths = run_training(cfg, emit, (lambda: time.monotonic() - t0 >= seconds) if seconds else None)
    return paths, steps[0], time.monotonic() - t0, time.process_time() - c0


def section_finetune(run: Run) -> dict:
    args, tok = run.args, run.tokenizer
    held = args.heldout
    if held not in run.corpus.collections():
        raise SystemExit(f"collection {held!r} is not in the corpus ({', '.join(sorted(run.corpus.collections()))})")
    ft_train = run.pieces("ft_train", ("train",), only=held)
    test = run.pieces("ft_test", ("test",), only=held, limit=args.max_test_pieces)
    test_split = "test"
    if not test:
        test, test_split = run.pieces("ft_validation", ("validation",), only=held, limit=args.max_test_pieces), \
            "validation"
    if not test:
        raise SystemExit(f"the held-out collection {held!r} has no test or validation pieces")
    base, meta = load_model(args.model, run.device)
    seen = training_overlap(meta, ft_train + test)
    if seen:
        log(f"WARNING: {seen} pieces of {held!r} are in the model's training folder: it was not held out")
    ctx = args.ft_ctx or model_schedule(args.model, meta, args)[0].ctx_len
    tests = PieceSet.build([p.path for p in test], [p.tokens for p in test], tok, ctx)
    before = tests.summary(torch_window_bits(rwkv_logits_fn(base), tests.windows, tok.pad_id, args.eval_batch,
                                             run.device))
    rows = [{"mode": "base model", **before}]
    state_result = None  # the style file, once the state mode has run
    for mode in args.ft_modes:
        out = run.work / f"ft_{mode}"
        shutil.rmtree(out, ignore_errors=True)

        def config(steps: int, folder: Path) -> TrainConfig:
            return TrainConfig(data=str(run.folder("ft_train")), out=str(folder), base=args.model, mode=mode,
                               steps=steps, ctx_len=ctx, batch_size=args.ft_batch, val_fraction=0.0,
                               checkpoint_every=10 ** 9, seed=args.seed, device=run.device,
                               cache_dir=str(run.cache), threads=args.threads, workers=args.workers)
        steps, calib_s = args.ft_steps, 0.0
        if not steps:  # measure a few steps, then fit the schedule's length to the time budget
            marks: list[float] = []
            t0 = time.monotonic()
            run_training(config(3, out / "calibrate"),
                         lambda e: e.kind == "step" and e.step >= 1 and marks.append(time.monotonic()))
            calib_s = time.monotonic() - t0
            per_step = (marks[-1] - marks[0]) / max(len(marks) - 1, 1) if len(marks) > 1 else calib_s
            steps = max(1, int(0.9 * args.ft_seconds / max(per_step, 1e-3)))  # room for scan and export
        log(f"section 4: {mode} fine-tuning, {steps} steps, at most {args.ft_seconds:g} s")
        paths, done, wall, cpu = _train_timed(config(steps, out / "run"), None if args.ft_steps else args.ft_seconds)
        if mode == "state":
            state_result = paths["result"]
            wkv = load_state_file(state_result, base)[0].to(run.device)
            bits = torch_window_bits(rwkv_logits_fn(base, wkv), tests.windows, tok.pad_id, args.eval_batch, run.device)
        else:
            tuned, _ = load_model(paths["result"], run.device)
            bits = torch_window_bits(rwkv_logits_fn(tuned), tests.windows, tok.pad_id, args.eval_batch, run.device)
        after = tests.summary(bits)
        rows.append({"mode": mode, **after, "steps": done, "wall_s": wall, "cpu_s": cpu, "calibration_s": calib_s,
                     "reduction": 1 - after["bits_per_note"] / before["bits_per_note"]})
    print_table(f"4. Fine-tuning on the held-out collection {held!r} ({len(ft_train)} training "
                f"pieces; {len(test)} {test_split} pieces, {tests.total_notes} notes; device {run.device})", rows,
                [("mode", "mode", "s"), ("bits/note", "bits_per_note", ".3f"), ("change", "reduction", "+.1%"),
                 ("steps", "steps", "d"), ("wall s", "wall_s", ".0f"), ("CPU s", "cpu_s", ".0f")])
    state = next((r for r in rows if r["mode"] == "state"), None)
    goal, profile = None, None
    if state is not None:
        goal = bool(state["reduction"] >= 0.20 and state["wall_s"] <= 600)
        print(f"goal (state tuning: >= 20% fewer bits per note within 10 minutes): {'met' if goal else 'NOT met'}")
        profile = position_profile(base, load_state_file(state_result, base)[0].to(run.device), tests.ids)
        print_table("4b. Where the style state helps: bits per token by position from the piece's start "
                    "(whole pieces through the recurrent state)", profile,
                    [("positions", "positions", "s"), ("tokens", "tokens", "d"), ("base", "base", ".3f"),
                     ("style", "style", ".3f"), ("change", "reduction", "+.1%")])
    return {"rows": rows, "test_split": test_split, "goal_met": goal, "heldout_pieces_in_training_folder": seen,
            "style_by_position": profile}


POSITION_EDGES = (0, 16, 64, 256, 1024)


@torch.no_grad()
def position_profile(model: RWKV7, wkv: torch.Tensor, pieces: list[list[int]]) -> list[dict]:
    """Bits per token of `model` from the zero state and from the style state `wkv`, by token position
    from each piece's start (buckets POSITION_EDGES, the last one open)."""
    device = model.emb.weight.device
    edges = [*POSITION_EDGES, 10 ** 9]
    sums = {"base": np.zeros(len(edges) - 1), "style": np.zeros(len(edges) - 1)}
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for ids in pieces:
        idx = torch.tensor(ids, device=device)[None]
        for name, start in (("base", None), ("style", wkv)):
            logits = model(idx[:, :-1], state=model.init_state(1, wkv=start))
            bits = (torch.nn.functional.cross_entropy(logits[0].float(), idx[0, 1:], reduction="none") / LN2).cpu()
            for b, (lo, hi) in enumerate(zip(edges, edges[1:])):
                sums[name][b] += float(bits[lo:hi].sum())
                if name == "base":
                    counts[b] += bits[lo:hi].numel()
    rows = []
    for b, (lo, hi) in enumerate(zip(edges, edges[1:])):
        if counts[b]:
            label = f"{lo}-{hi - 1}" if hi < 10 ** 9 else f"{lo}-"
            rows.append({"positions": label, "tokens": int(counts[b]), "base": sums["base"][b] / counts[b],
                         "style": sums["style"][b] / counts[b], "reduction": 1 - sums["style"][b] / sums["base"][b]})
    return rows


# --- output ------------------------------------------------------------------------------------------
def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if fmt == "s":
        return str(value)
    if fmt.endswith("%"):  # "reduction" is a fall in bits: show it as a negative change
        return format(-value, fmt)
    return format(int(value) if fmt.endswith("d") else value, fmt)


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    cells = [[_cell(r.get(key), fmt) for _, key, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _, _) in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, ((h, _, _), w) in enumerate(zip(columns, widths))))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))
    sys.stdout.flush()


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _jsonable(obj.item())
    return obj


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="the base model checkpoint (sections 1, 3, 4)")
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus"), help="folder with manifest.json")
    p.add_argument("--heldout", default="oneills1850", help="collection held out of pretraining (section 4)")
    p.add_argument("--sections", type=int, nargs="+", choices=SECTIONS, help="default: 1 3 4 (2 with --deepembed)")
    p.add_argument("--deepembed", action="store_true", help="also run section 2")
    p.add_argument("--json", help="save every table (and per-prompt details) here")
    p.add_argument("--render", type=int, nargs="?", const=3, default=0,
                   help="save this many piano-roll PNGs of section 3 to docs/ (default 3)")
    p.add_argument("--link-train", metavar="DIR",
                   help="only make DIR: links to the training split without the held-out collection (the folder "
                        "to pretrain the base model on), then exit")
    p.add_argument("--work", help="folder for links, caches and training runs (default: a temporary one)")
    p.add_argument("--cache", help="token cache (default: the training loop's user cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--workers", type=int, help="tokenizer processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--max-test-pieces", type=int, help="score only the first N test pieces (quick runs)")
    g = p.add_argument_group("section 1")
    g.add_argument("--ngram-orders", type=int, nargs="+", default=[3, 5])
    g.add_argument("--budget-tokens", type=float, help="Transformer training tokens (default: the RWKV run's)")
    g.add_argument("--skip-transformer", action="store_true")
    g.add_argument("--ctx", type=int, help="without a resume.pt: the RWKV run's context (default: meta or 512)")
    g.add_argument("--batch", type=int, help="without a resume.pt: the RWKV run's batch (default: meta or 8)")
    g.add_argument("--steps", type=int, help="without a resume.pt: the RWKV run's steps (default: meta's step)")
    g.add_argument("--lr", type=float, help="peak learning rate of from-scratch runs (default: core.train's)")
    g = p.add_argument_group("section 2")
    g.add_argument("--de-layers", type=int, default=4)
    g.add_argument("--de-width", type=int, default=256)
    g.add_argument("--de-steps", type=int, default=300)
    g.add_argument("--de-ctx", type=int, default=256)
    g.add_argument("--de-batch", type=int, default=8)
    g = p.add_argument_group("section 3")
    g.add_argument("--prompts", type=int, default=20)
    g.add_argument("--prompt-bars", type=int, default=4)
    g.add_argument("--gen-bars", type=int, default=4)
    g.add_argument("--gen-ctx", type=int, default=1024)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=0.95)
    g = p.add_argument_group("section 4")
    g.add_argument("--ft-modes", nargs="+", choices=("state", "lora", "full"), default=["state", "lora", "full"])
    g.add_argument("--ft-seconds", type=float, default=600.0, help="wall-clock training time per mode")
    g.add_argument("--ft-steps", type=int, help="a fixed step count per mode instead of --ft-seconds")
    g.add_argument("--ft-batch", type=int, default=8)
    g.add_argument("--ft-ctx", type=int, help="default: the base model's training context")
    args = p.parse_args(argv)
    if args.sections is None:
        args.sections = [1, 3, 4] + ([2] if args.deepembed else [])
    if any(s in (1, 3, 4) for s in args.sections) and not args.model and not args.link_train:
        p.error("--model is required for sections 1, 3 and 4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.link_train:
        corpus = Corpus.load(args.corpus)
        files = corpus.files(("train",), without=args.heldout)
        link_folder(corpus, files, Path(args.link_train))
        print(f"{args.link_train}: {len(files)} training pieces (without {args.heldout})")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    temp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(temp := tempfile.mkdtemp(prefix="eval_base_"))
    run = Run(args, Tokenizer(), Corpus.load(args.corpus), work,
              Path(args.cache) if args.cache else D.default_cache_dir())
    results: dict = {"model": args.model, "corpus": args.corpus, "heldout": args.heldout}
    runners = {1: ("bits_per_note", section_bits), 2: ("deepembed", section_deepembed),
               3: ("continuations", section_continuations), 4: ("finetune", section_finetune)}
    try:
        for s in sorted(set(args.sections)):
            name, fn = runners[s]
            t0 = time.perf_counter()
            results[name] = fn(run)
            results[name]["seconds"] = time.perf_counter() - t0
            if args.json:  # after every section, so a long run keeps what it has done
                path = Path(args.json)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps(_jsonable(results), indent=1))
                os.replace(tmp, path)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation of the base model: one command that prints the tables (and saves them with --json).

    # 1. the pretraining folder: the training split without the held-out collection (links, no copies)
    .venv/bin/python bench/eval_base.py --corpus data/corpus --heldout oneills1850 --link-train data/pretrain
    # 2. pretrain with the project's own command; the size and the Transformer baselines come from
    #    bench/sweep_base.py (its Transformer runs keep their weights beside runs/sweep/sweep.json)
    # 3. the evidence tables (sections 1 3 5 6 by default; any of them alone with --sections)
    .venv/bin/python bench/eval_base.py --model runs/base/model.pth --corpus data/corpus --heldout oneills1850 \
        --sweep runs/sweep/sweep.json --threads 1 --json docs/eval_base.json

The corpus folder holds the MIDI files and its manifest.json, whose `split` of each file (train /
validation / test) is used as is. The held-out collection (--heldout) is never trained on: sections 1 and
5 score its test pieces beside the others', section 4 fine-tunes on it. Sections:

1. Test bits per note, by collection: the model (--model, scored with its own tokenizer), today's model
   (--old-model, with its own tokenizer on the same files), a Kneser-Ney n-gram counted here on the
   training split without the held-out collection (tokenized like --model), the sweep's Transformers
   (for each size the learning rate with the best mean validation bits per note, scored on the test
   pieces when the sweep kept its weights), and a uniform guess over the vocabulary. Scoring rule:
   core/evaluate/scoring.py (every token once, windows of the model's training context).
2. DeepEmbed off / on (opt-in): two models of one size from one seed, compared on the validation split.
3. Continuations of test prompts (--cont-collections): the first k bars are the prompt, m bars are
   generated and compared with the true m bars and with "repeat the prompt's last m bars"
   (core/evaluate/music.py: pitch-class, inter-onset and velocity histogram overlap, density, share in
   key). Every output is checked: its tokens decode without an invalid id, its notes lie in the m bars,
   and write_midi + read_midi keep them.
4. Fine-tuning on the held-out collection (opt-in): bits per note before and after each mode (state,
   LoRA, full) trained for --ft-seconds; for the state mode also bits by position from the piece's start.
5. Infill: bits per note of the true middle of bar-infill examples cut from the test pieces, given the
   bars before and after it against the bars before only; then generated infills of test pieces (m bars
   in the middle): every output valid (tokens accepted by the grammar) and the notes outside the range
   untouched, with the continuation metrics of the generated middle against the true one.
6. Live figures at the model's size, one thread: step latency, real-time factor on the densest test
   piece, first note after Continue with a 1024-token prompt (bench/bench_live.py's measurements).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.corpus import Corpus, link_folder  # noqa: E402
from core.training import data as D  # noqa: E402
from core.evaluate import music as MM  # noqa: E402
from core.evaluate.tables import jsonable, print_table  # noqa: E402
from core.evaluate.ngram import KneserNeyNGram  # noqa: E402
from core.evaluate.scoring import (PieceSet, infill_bits, ngram_window_bits, position_profile,  # noqa: E402
                                   torch_window_bits, uniform_window_bits)
from core.evaluate.transformer import load_transformer, parameter_count  # noqa: E402
from core.network.checkpoint import load_checkpoint, load_state_file, save_checkpoint  # noqa: E402
from core.network.model import ModelConfig, RWKV7  # noqa: E402
from core.paths import base_model  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.training.train import run_training  # noqa: E402
from core.training.train_config import DEFAULT_LR, RESUME_FILE, TrainConfig  # noqa: E402

SECTIONS = (1, 2, 3, 4, 5, 6)
DEFAULT_SECTIONS = (1, 3, 5, 6)  # the base model's evidence; 2 and 4 on request


@dataclass
class Run:
    """What every section shares: arguments, the model's tokenizer, corpus, work folders, loaded sets."""
    args: argparse.Namespace
    tokenizer: Tokenizer
    corpus: Corpus
    work: Path
    cache: Path
    _sets: dict = field(default_factory=dict)

    def pieces(self, name: str, splits: tuple[str, ...], *, only=None, without=None, limit=None,
               tokenizer: Tokenizer | None = None) -> list[D.Piece]:
        """Tokenized pieces of a split (cached per name and tokenizer); the folder of links stays for
        training runs. Piece.path is the file's path in the corpus."""
        tok = tokenizer or self.tokenizer
        if name not in self._sets:
            files = self.corpus.files(splits, only=only, without=without)
            link_folder(self.corpus, files[:limit] if limit else files, self.work / name)
            self._sets[name] = {}
        if tok.VERSION not in self._sets[name]:
            pieces, report = D.scan_folder(self.work / name, tok, cache_dir=self.cache, workers=self.args.workers)
            for s in report.skipped:
                log(f"  {name} ({tok.VERSION}): skipped {s['path']}: {s['reason']}")
            self._sets[name][tok.VERSION] = pieces
        return self._sets[name][tok.VERSION]

    def test_pieces(self, collections, tokenizer: Tokenizer | None = None) -> tuple[list[D.Piece], list[str]]:
        """The test pieces of each collection (at most --max-test-pieces each) and the collection of each."""
        pieces, labels = [], []
        for c in collections:
            got = self.pieces(f"test_{c}", ("test",), only=c, limit=self.args.max_test_pieces, tokenizer=tokenizer)
            pieces += got
            labels += [c] * len(got)
        return pieces, labels

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
    model_tokenizer(meta)  # refuses a vocabulary this program does not know
    return model, meta


def model_tokenizer(meta: dict) -> Tokenizer:
    """The tokenizer a checkpoint was made with (the latest where it says none)."""
    return Tokenizer.from_dict(meta["tokenizer"]) if "tokenizer" in meta else Tokenizer()


def rwkv_logits_fn(model: RWKV7, wkv: torch.Tensor | None = None):
    if wkv is None:
        return lambda idx: model(idx)
    return lambda idx: model(idx, state=model.init_state(idx.shape[0], wkv=wkv))


def model_ctx(model_path: str, meta: dict, override: int | None = None) -> int:
    """The context the model was trained with: its resume.pt's config, else the checkpoint's meta, else 512."""
    if override:
        return override
    resume = Path(model_path).with_name(RESUME_FILE)
    if resume.exists():
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        return TrainConfig.from_dict(ckpt["config"]).ctx_len
    return int(meta.get("training", {}).get("ctx_len") or 512)


def model_name(model: RWKV7, tok: Tokenizer, what: str) -> str:
    return f"RWKV-7 {model.config.n_layer}x{model.config.n_embd}, {what} (tokenizer v{tok.VERSION.rsplit('-', 1)[-1]})"


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


def sweep_transformers(path: Path) -> list[dict]:
    """The sweep's Transformer runs (keys "tf..."), grouped by size: per size every rate with its mean
    validation bits per note, the best one marked, and the path of its weights if the sweep kept them."""
    if not path.exists():
        return []
    results = json.loads(path.read_text())
    runs = []
    for spec, row in results.items():
        if not spec.startswith("tf") or not row.get("val"):
            continue
        weights = path.parent / spec.replace(":", "_") / "transformer.pt"
        runs.append({"spec": spec, "size": spec[2:].split(":")[0], "lr": row["lr"], "steps": row["steps"],
                     "params": row["params"], "val": row["val"], "val_mean": float(np.mean(list(row["val"].values()))),
                     "weights": str(weights) if weights.exists() else None})
    for size in {r["size"] for r in runs}:
        group = [r for r in runs if r["size"] == size]
        best = min(group, key=lambda r: r["val_mean"])
        for r in group:
            r["best"] = r is best
            r["rates"] = len(group)
    return sorted(runs, key=lambda r: (r["size"], r["lr"]))


# --- section 1 ---------------------------------------------------------------------------------------
def _columns(ps: PieceSet, bits: np.ndarray, labels: list[str], held: str) -> dict:
    """Bits per note by collection, and "all" over the collections that were trained on."""
    out = ps.by_group(bits, labels)
    pooled = ps.by_group(bits, ["all" if label != held else label for label in labels])
    return out | {"all": pooled.get("all")}


def section_bits(run: Run) -> dict:
    args = run.args
    held = args.heldout
    collections = sorted(run.corpus.collections() - {held}) + ([held] if held in run.corpus.collections() else [])
    model, meta = load_model(args.model, run.device)
    tok = model_tokenizer(meta)
    ctx = model_ctx(args.model, meta, args.ctx)
    test, labels = run.test_pieces(collections, tok)
    if not test:
        raise SystemExit("no test pieces in the corpus")
    ps = PieceSet.build([p.path for p in test], [p.tokens for p in test], tok, ctx)
    overlap = training_overlap(meta, test)
    if overlap:
        log(f"WARNING: {overlap} of the {len(test)} test pieces are in the model's training folder "
            f"({meta['training']['data']}): its test figures are not honest")
    rows: list[dict] = []
    notes = {c: sum(n for n, label in zip(ps.notes, labels) if label == c) for c in collections}

    def add(name: str, bits: np.ndarray, pieces: PieceSet, labs: list[str], **info) -> dict:
        row = {"model": name, **info, **_columns(pieces, bits, labs, held)}
        rows.append(row)
        return row

    t0 = time.perf_counter()
    add(model_name(model, tok, "this model"), torch_window_bits(rwkv_logits_fn(model), ps.windows, tok.pad_id,
                                                               args.eval_batch, run.device),
        ps, labels, params=parameter_count(model), ctx=ctx, eval_s=time.perf_counter() - t0)

    if args.old_model and args.old_model != "none" and os.path.samefile(args.old_model, args.model):
        log(f"--old-model {args.old_model} is --model itself: give today's model from before the change "
            f"(e.g. git show <commit>:resources/rwkv7-music-base.pth > old.pth); its row is left out")
    elif args.old_model and args.old_model != "none":
        old, old_meta = load_model(args.old_model, run.device)
        old_tok = model_tokenizer(old_meta)
        old_ctx = model_ctx(args.old_model, old_meta)
        old_test, old_labels = run.test_pieces(collections, old_tok)
        old_ps = PieceSet.build([p.path for p in old_test], [p.tokens for p in old_test], old_tok, old_ctx)
        t0 = time.perf_counter()
        add(model_name(old, old_tok, "today's"), torch_window_bits(rwkv_logits_fn(old), old_ps.windows,
                                                                   old_tok.pad_id, args.eval_batch, run.device),
            old_ps, old_labels, params=parameter_count(old), ctx=old_ctx, eval_s=time.perf_counter() - t0)
        del old

    train = run.pieces("train", ("train",), without=held, tokenizer=tok)
    for order in args.ngram_orders:
        t0 = time.perf_counter()
        ngram = KneserNeyNGram(order, tok.vocab_size, tok.pad_id).fit(p.tokens for p in train)
        add(f"{order}-gram, modified Kneser-Ney", ngram_window_bits(ngram, ps.windows), ps, labels,
            params=sum(len(o.grams) for o in ngram.orders), ctx=ctx, eval_s=time.perf_counter() - t0,
            train_tokens=ngram.trained_tokens)

    search = sweep_transformers(Path(args.sweep)) if args.sweep else []
    for r in search:
        if not r["best"]:
            continue
        name = f"Transformer ~{r['size']}, lr {r['lr']:g} (best of {r['rates']})"
        if r["weights"] is None:
            rows.append({"model": name + ": weights not kept, no test score", "params": r["params"]})
            continue
        tf, info = load_transformer(r["weights"], run.device)
        if info.get("tokenizer", {}).get("vocab_size", tok.vocab_size) != tok.vocab_size:
            rows.append({"model": name + ": another vocabulary, not scored", "params": r["params"]})
            continue
        tf_ps = ps if tf.config.ctx_len == ctx else PieceSet.build(ps.names, ps.ids, tok, tf.config.ctx_len)
        t0 = time.perf_counter()
        add(name, torch_window_bits(tf, tf_ps.windows, tok.pad_id, args.eval_batch, run.device), tf_ps, labels,
            params=parameter_count(tf), ctx=tf.config.ctx_len, eval_s=time.perf_counter() - t0)

    add(f"uniform guess over {tok.vocab_size} tokens", uniform_window_bits(ps.windows, tok.vocab_size), ps,
        labels, params=0, ctx=ctx)

    heads = [(f"{c}*" if c == held else c, c, ".2f") for c in collections] + [("all", "all", ".2f")]
    print_table(f"1. Test bits per note by collection ({len(test)} test pieces; * held out of pretraining; "
                f"all: the pretraining collections)", rows,
                [("model", "model", "s"), ("params", "params", ",d"), ("ctx", "ctx", "d")] + heads
                + [("eval s", "eval_s", ".0f")])
    print("notes scored: " + ", ".join(f"{c} {n}" for c, n in notes.items())
          + f" (tokenizer {tok.VERSION}; today's model counts its own notes)")
    if search:
        print_table("Transformer learning-rate search (the sweep's validation bits per note; mean over collections)",
                    [{**r, "mark": "best" if r["best"] else ""} | {f"val_{c}": v for c, v in r["val"].items()}
                     for r in search],
                    [("run", "spec", "s"), ("lr", "lr", "g"), ("steps", "steps", "d"), ("params", "params", ",d"),
                     ("val mean", "val_mean", ".3f"), ("", "mark", "s")])
    checks = goal_checks(rows, collections, held)
    for line in checks["lines"]:
        print(line)
    return {"rows": rows, "collections": collections, "ctx": ctx, "notes": notes, "transformer_search": search,
            "test_pieces_in_training_folder": overlap, "goals": checks}


def goal_checks(rows: list[dict], collections: list[str], held: str) -> dict:
    """The issue's goals on the table: below every baseline on every test set, <= 12 bits per note on
    pop909, no worse than today's model on folk tunes."""
    new = rows[0]
    lines, out = [], {}
    baselines = [r for r in rows[1:] if ("gram" in r["model"] or r["model"].startswith("Transformer"))
                 and r.get(collections[0]) is not None]
    for b in baselines:
        worse = [c for c in collections if b.get(c) is not None and new[c] >= b[c]]
        out[b["model"]] = not worse
        lines.append(f"below {b['model']} on every test set: {'yes' if not worse else 'NO (' + ', '.join(worse) + ')'}")
    if "pop909" in collections:
        out["pop909_at_most_12"] = new["pop909"] <= 12
        lines.append(f"pop909: {new['pop909']:.2f} bits per note (goal: at most 12): "
                     f"{'met' if new['pop909'] <= 12 else 'NOT met'}")
    old = next((r for r in rows[1:] if "today's" in r["model"]), None)
    if old is not None:
        for c in ("essenFolksong", "ryansMammoth", held):
            if c in collections and old.get(c) is not None:
                out[f"{c}_no_worse"] = new[c] <= old[c]
                lines.append(f"{c} (folk): {new[c]:.2f} against today's {old[c]:.2f}: "
                             f"{'no worse' if new[c] <= old[c] else 'WORSE'}")
    return {"met": out, "lines": lines}
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
        torch.manual_seed(args.seed)  # the same seed as a from-scratch run of core.training.train
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


# --- sections 3 and 5: generated music -----------------------------------------------------------------
def _note_key(n) -> tuple:
    return (n.start, n.duration, n.pitch, n.velocity, n.program, n.drum)


def document_notes(score) -> list:
    """The notes as the file holds them (durations as the keys were held), not Score.notes: that view folds
    the sustain pedal, so a note struck in a range can shorten or lengthen one before it."""
    return [n for t in score.tracks() for n in t.notes]


def test_cases(run: Run, collection: str, min_bars: int):
    """(file, score, bar lines) of the collection's test pieces with at least `min_bars` bars, in order."""
    from core.midi import read_midi
    for rel in run.corpus.files(("test",), only=collection):
        score, _ = read_midi(str(run.corpus.root / rel))
        bars = score.bar_starts()
        if len(bars) >= min_bars:
            yield rel, score, bars


def midi_round_trip(score, path: Path) -> bool:
    """write_midi then read_midi keeps every note."""
    from core.midi import read_midi, write_midi
    write_midi(score, path)
    back, _ = read_midi(str(path))
    return len(back.notes) == len(score.notes)


METRIC_COLUMNS = [("pitch-class overlap", "pitch_class_overlap", ".3f"), ("IOI overlap", "ioi_overlap", ".3f"),
                  ("velocity overlap", "velocity_overlap", ".3f"), ("density ratio", "density_ratio", ".2f"),
                  ("notes/bar", "notes_per_bar", ".1f"), ("in key", "in_key", ".3f")]


def _truth_row(collection: str, mean: dict, name: str = "true continuation") -> dict:
    return {"collection": collection, "name": name, "pitch_class_overlap": 1.0, "ioi_overlap": 1.0,
            "velocity_overlap": 1.0, "density_ratio": 1.0, "notes_per_bar": mean.get("true_notes_per_bar"),
            "in_key": mean.get("true_in_key")}


def section_continuations(run: Run) -> dict:
    from core.generate import Generator, SamplingConfig
    from core.score import TICKS_PER_BEAT, Note

    args = run.args
    gen = Generator.load(args.model, device=run.device, ctx=args.gen_ctx, threads=args.threads or 1)
    tok = gen.tokenizer
    k, m = args.prompt_bars, args.gen_bars
    tmp = Path(tempfile.mkdtemp(prefix="eval_cont_", dir=run.work))
    checks = Counter(decoded=0, invalid_tokens=0, notes_outside=0, bad_velocity=0, midi_round_trips=0)
    table, per_collection, pictures = [], {}, []
    for collection in args.cont_collections:
        rows, reference = [], []
        for rel, score, bars in test_cases(run, collection, k + m + 1):
            if len(rows) >= args.prompts:
                break
            split, stop = bars[k], bars[k + m]
            true = [n for n in score.notes if split <= n.start < stop]
            prompt_notes = [n for n in score.notes if n.start < split]
            if not true or not [n for n in prompt_notes if not n.drum]:
                continue
            stream = gen.stream(score.slice(0, split), bars=m, at_tick=split,
                                sampling=SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                                                        seed=args.seed + len(rows)))
            generated = [item.note for item in stream]
            _, stats = tok.decode(stream.window.ids + stream.tokens[0])
            checks["decoded"] += 1
            checks["invalid_tokens"] += stats.invalid
            checks["notes_outside"] += sum(not stream.start_tick <= n.start < stream.end_tick for n in generated)
            checks["bad_velocity"] += sum(not 1 <= n.velocity <= 127 for n in generated)
            checks["midi_round_trips"] += midi_round_trip(stream.score(generated), tmp / f"{collection}{len(rows)}.mid")
            rows.append({"piece": rel, **MM.compare_continuation(prompt_notes, generated, true, m, TICKS_PER_BEAT)})
            lo = bars[k - m] if k >= m else 0  # the reference: the prompt's last m bars played again
            repeat = [Note(n.start + split - lo, n.duration, n.pitch, n.velocity, n.program, n.drum)
                      for n in prompt_notes if lo <= n.start]
            reference.append(MM.compare_continuation(prompt_notes, repeat, true, m, TICKS_PER_BEAT))
            if len(pictures) < args.render:
                from bench.render_roll import render_roll
                out = ROOT / "docs" / f"eval_continuation_{len(pictures) + 1}.png"
                pictures.append(render_roll(str(out), prompt_notes, generated, true, split_tick=split,
                                            bar_ticks=bars[:k + m + 1], ticks_per_beat=TICKS_PER_BEAT,
                                            title=f"{rel}: {k} bars of prompt, {m} generated"))
        if not rows:
            log(f"section 3: no test piece of {collection!r} has {k + m + 1} bars with notes")
            continue
        mean, mean_ref = MM.mean_metrics(rows), MM.mean_metrics(reference)
        per_collection[collection] = {"prompts": len(rows), "mean": mean, "repeat_reference": mean_ref,
                                      "per_prompt": rows}
        table += [{"collection": f"{collection} ({len(rows)})", "name": "RWKV-7 continuation", **mean},
                  {"collection": "", "name": "repeat the prompt's last bars", **mean_ref}, _truth_row("", mean)]
    shutil.rmtree(tmp, ignore_errors=True)
    if not table:
        raise SystemExit(f"section 3: no test prompts of {k + m + 1} bars in {', '.join(args.cont_collections)}")
    print_table(f"3. Continuations of test prompts: {k} bars of prompt, {m} bars generated (temperature "
                f"{args.temperature}, top-p {args.top_p}); means over prompts, against the true {m} bars", table,
                [("collection (prompts)", "collection", "s"), ("", "name", "s")] + METRIC_COLUMNS)
    valid = checks["invalid_tokens"] == 0 and checks["notes_outside"] == 0 and checks["bad_velocity"] == 0 \
        and checks["midi_round_trips"] == checks["decoded"]
    print(f"every output valid: {'yes' if valid else 'NO'} ({checks['decoded']} continuations, "
          f"{checks['invalid_tokens']} invalid tokens, {checks['notes_outside']} notes outside the bars, "
          f"{checks['bad_velocity']} bad velocities, {checks['midi_round_trips']} MIDI round trips)"
          + (f"; pictures: {', '.join(pictures)}" if pictures else ""))
    return {"collections": per_collection, "checks": dict(checks), "valid": valid, "pictures": pictures}


def generate_infill(gen, score, start_tick: int, end_tick: int, sampling):
    """Bars start_tick..end_tick of `score` regenerated by core.infill (the app's path): the whole piece
    afterwards, [(prompt ids, sampled ids) per chunk], and the (first, end) tick actually regenerated."""
    from core.infill import infill
    stream = infill(gen, score, start_tick, end_tick, sampling=sampling)
    piece = stream.generate()[0]
    return piece, list(zip(stream.prompts[0], stream.tokens[0])), (stream.start_tick, stream.end_tick)


def section_infill(run: Run) -> dict:
    from core.generate import Generator, SamplingConfig
    from core.score import TICKS_PER_BEAT

    args = run.args
    held = args.heldout
    model, meta = load_model(args.model, run.device)
    tok = model_tokenizer(meta)
    if not tok.infill:
        print(f"\n5. Infill: the model's tokenizer ({tok.VERSION}) has no infill tokens")
        return {"skipped": f"tokenizer {tok.VERSION} has no infill tokens"}
    ctx = model_ctx(args.model, meta, args.ctx)
    collections = sorted(run.corpus.collections() - {held}) + ([held] if held in run.corpus.collections() else [])
    rows = []
    for c in collections:
        pieces, _ = run.test_pieces([c], tok)
        if not pieces:
            continue
        r = infill_bits(rwkv_logits_fn(model), pieces, tok, ctx, examples=args.infill_examples, seed=args.seed,
                        device=run.device)
        gain = 1 - r["before_and_after"] / r["before_only"] if r["middle_notes"] else math.nan
        rows.append({"collection": f"{c}*" if c == held else c, **r, "gain": gain})
    print_table(f"5. Infill: bits per note of the true middle (bar-infill examples cut from test windows, "
                f"at most {args.infill_examples} per collection; * held out of pretraining)", rows,
                [("collection", "collection", "s"), ("examples", "examples", "d"),
                 ("middle notes", "middle_notes", "d"), ("before + after", "before_and_after", ".3f"),
                 ("before only", "before_only", ".3f"), ("change", "gain", "+.1%")])
    not_helped = [r["collection"] for r in rows if r["middle_notes"] and not r["before_and_after"] < r["before_only"]]
    print(f"the bars after the gap help on every test set: "
          f"{'yes' if not not_helped else 'NO (' + ', '.join(not_helped) + ')'}")
    result = {"bits": rows, "after_helps": not not_helped}

    gen = Generator(model, tok, ctx=args.gen_ctx, threads=args.threads or 1)
    k, m = args.prompt_bars, args.infill_bars
    tmp = Path(tempfile.mkdtemp(prefix="eval_infill_", dir=run.work))
    checks = Counter(generated=0, invalid_tokens=0, outside_changed=0, notes_outside_range=0, midi_round_trips=0)
    table, per_collection = [], {}
    try:
        for collection in args.cont_collections:
            metrics = []
            for rel, score, bars in test_cases(run, collection, 2 * k + m + 1):
                if len(metrics) >= args.infills:
                    break
                start, end = bars[k], bars[k + m]
                true = [n for n in score.notes if start <= n.start < end]
                if not true:
                    continue
                piece, chunks, (s, e) = generate_infill(
                    gen, score, start, end, SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                                                           seed=args.seed + len(metrics)))
                checks["generated"] += 1
                for prompt, sampled in chunks:
                    g = tok.grammar(prompt)
                    for t in sampled:
                        if not g.accepts(t):
                            checks["invalid_tokens"] += 1
                            break
                        g.advance(t)
                outside = lambda notes: Counter(_note_key(n) for n in notes if not s <= n.start < e)  # noqa: E731
                checks["outside_changed"] += outside(document_notes(score)) != outside(document_notes(piece))
                checks["notes_outside_range"] += sum(n.start + n.duration > e for n in document_notes(piece)
                                                     if s <= n.start < e)
                new = [n for n in piece.notes if s <= n.start < e]
                checks["midi_round_trips"] += midi_round_trip(piece, tmp / f"{collection}{len(metrics)}.mid")
                before = [n for n in score.notes if n.start < s]
                metrics.append({"piece": rel, **MM.compare_continuation(
                    before, new, [n for n in score.notes if s <= n.start < e], m, TICKS_PER_BEAT)})
            if metrics:
                mean = MM.mean_metrics(metrics)
                per_collection[collection] = {"infills": len(metrics), "mean": mean, "per_infill": metrics}
                table += [{"collection": f"{collection} ({len(metrics)})", "name": "RWKV-7 infill", **mean},
                          _truth_row("", mean, "true bars")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if table:
        print_table(f"5b. Generated infills: bars {k + 1}-{k + m} of test pieces regenerated, given {k} bars before "
                    f"and the bars after; means against the true bars", table,
                    [("collection (infills)", "collection", "s"), ("", "name", "s")] + METRIC_COLUMNS)
    valid = checks["invalid_tokens"] == 0 and checks["outside_changed"] == 0 and checks["notes_outside_range"] == 0 \
        and checks["midi_round_trips"] == checks["generated"]
    print(f"every infilled output valid, bars outside the range untouched: {'yes' if valid else 'NO'} "
          f"({checks['generated']} infills, {checks['invalid_tokens']} with a token the grammar refuses, "
          f"{checks['outside_changed']} with notes outside the range changed, {checks['notes_outside_range']} new "
          f"notes sounding past the range, {checks['midi_round_trips']} MIDI round trips)")
    return result | {"generated": per_collection, "checks": dict(checks), "valid": valid}


# --- section 6 ---------------------------------------------------------------------------------------
def section_live(run: Run) -> dict:
    from bench import bench_live as BL
    from core.generate import Generator, torch_threads
    from core.live import Scheduler
    from core.midi import read_midi

    args = run.args
    gen = Generator.load(args.model, ctx=1024, threads=1)  # the app's path: CPU, one thread
    tok = gen.tokenizer
    scores = BL.corpus_scores() + [(rel, read_midi(str(run.corpus.root / rel))[0])
                                   for rel in run.corpus.files(("test",), only="pop909")[:args.live_pieces]]
    name, dense, need = BL.densest(scores, tok)
    prompt = BL.prompt_of(dense, tok, 1024)
    logits, state = gen._prefill(gen.window(prompt).ids)
    token = torch.tensor([tok.bar_id])
    times = []
    with torch_threads(1):
        for _ in range(args.live_steps):
            t0 = time.perf_counter()
            gen.styled.step(token, state)
            times.append(time.perf_counter() - t0)
    step_ms = statistics.median(times) * 1000
    rate = BL.sustained(gen, prompt, 1, args.live_steps)
    first = []
    with Scheduler(BL.NullPort()) as sched:
        for r in range(args.repeats):
            gen._prefill_cache.clear()
            first.append(BL.first_note(gen, prompt, sched, None, seed=r))
    ready_ms = statistics.median(f["ready"] for f in first) * 1000
    first_ms = statistics.median(f["out"] for f in first) * 1000
    prefill_ms = statistics.median(f["prefill"] for f in first) * 1000
    size_mb = os.path.getsize(args.model) / 1e6
    rows = [{"measure": "model step, one token, one thread", "result": f"{step_ms:.2f} ms", "goal": ""},
            {"measure": "sustained generation, sampling included", "result": f"{rate:.0f} tokens/s", "goal": ""},
            {"measure": f"real-time factor on dense piano ({name}: {need:.0f} tokens/s)", "result": f"{rate / need:.1f}",
             "goal": ">= 10"},
            {"measure": f"first note ready after Continue ({first[0]['tokens']}-token prompt, cold; prefill "
                        f"{prefill_ms:.0f} ms)", "result": f"{ready_ms:.0f} ms", "goal": ""},
            {"measure": "first note out (bench_live's measure: the 50 ms lookahead included)",
             "result": f"{first_ms:.0f} ms", "goal": "< 150 ms"},
            {"measure": f"size on disk ({parameter_count(gen.model):,} parameters)", "result": f"{size_mb:.1f} MB",
             "goal": "<= 30 MB"}]
    print_table(f"6. Live figures (CPU, one thread; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})", rows,
                [("measure", "measure", "s"), ("result", "result", "s"), ("goal", "goal", "s")])
    met = rate / need >= 10 and first_ms < 150 and size_mb <= 30
    print(f"live goals: {'met' if met else 'NOT met'} (medians of {len(first)} first notes; timings are wall "
          f"clock, so a busy machine slows them)")
    return {"step_ms": step_ms, "tokens_per_second": rate, "dense_piece": name, "dense_tokens_per_second": need,
            "real_time_factor": rate / need, "first_note_ms": first_ms, "first_note_ready_ms": ready_ms,
            "prefill_ms": prefill_ms, "first_note_prompt_tokens": first[0]["tokens"],
            "size_mb": size_mb, "params": parameter_count(gen.model), "goals_met": met}


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
    ctx = args.ft_ctx or model_ctx(args.model, meta, args.ctx)
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


# --- output ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="the model to evaluate (sections 1 and 3-6)")
    p.add_argument("--old-model", default=str(base_model() or ""),
                   help="today's model, scored with its own tokenizer in section 1 (default: the bundled one; "
                        "'none' to leave it out)")
    p.add_argument("--sweep", default=str(ROOT / "runs" / "sweep" / "sweep.json"),
                   help="bench/sweep_base.py's results: its Transformer runs are section 1's Transformer rows")
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus"), help="folder with manifest.json")
    p.add_argument("--heldout", default="oneills1850", help="collection held out of pretraining")
    p.add_argument("--sections", type=int, nargs="+", choices=SECTIONS,
                   help=f"default: {' '.join(map(str, DEFAULT_SECTIONS))} (2 with --deepembed)")
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
    p.add_argument("--max-test-pieces", type=int, help="score only the first N test pieces of each collection")
    p.add_argument("--ctx", type=int, help="scoring context of --model (default: its training context)")
    g = p.add_argument_group("section 1")
    g.add_argument("--ngram-orders", type=int, nargs="+", default=[5])
    g = p.add_argument_group("section 2")
    g.add_argument("--de-layers", type=int, default=4)
    g.add_argument("--de-width", type=int, default=256)
    g.add_argument("--de-steps", type=int, default=300)
    g.add_argument("--de-ctx", type=int, default=256)
    g.add_argument("--de-batch", type=int, default=8)
    g.add_argument("--lr", type=float, help="peak learning rate of section 2's runs (default: core.training.train's)")
    g = p.add_argument_group("sections 3 and 5")
    g.add_argument("--cont-collections", nargs="+", default=["pop909", "bach"],
                   help="collections whose test pieces give the prompts (and the generated infills)")
    g.add_argument("--prompts", type=int, default=10, help="continuations per collection")
    g.add_argument("--prompt-bars", type=int, default=4, help="bars of prompt (and of context each side of an infill)")
    g.add_argument("--gen-bars", type=int, default=4)
    g.add_argument("--gen-ctx", type=int, default=1024)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--infill-examples", type=int, default=40, help="infill examples scored per collection")
    g.add_argument("--infills", type=int, default=5, help="generated infills per collection")
    g.add_argument("--infill-bars", type=int, default=2, help="bars each generated infill regenerates")
    g = p.add_argument_group("section 4")
    g.add_argument("--ft-modes", nargs="+", choices=("state", "lora", "full"), default=["state", "lora", "full"])
    g.add_argument("--ft-seconds", type=float, default=600.0, help="wall-clock training time per mode")
    g.add_argument("--ft-steps", type=int, help="a fixed step count per mode instead of --ft-seconds")
    g.add_argument("--ft-batch", type=int, default=8)
    g.add_argument("--ft-ctx", type=int, help="default: the base model's training context")
    g = p.add_argument_group("section 6")
    g.add_argument("--live-steps", type=int, default=300, help="model steps timed")
    g.add_argument("--live-pieces", type=int, default=20, help="pop909 test pieces searched for the densest")
    g.add_argument("--repeats", type=int, default=3, help="first-note measurements (median)")
    args = p.parse_args(argv)
    if args.sections is None:
        args.sections = list(DEFAULT_SECTIONS) + ([2] if args.deepembed else [])
    if any(s != 2 for s in args.sections) and not args.model and not args.link_train:
        p.error("--model is required for sections 1 and 3-6")
    for flag, path in (("--model", args.model), ("--old-model", args.old_model)):
        if path and path != "none" and not Path(path).is_file():
            p.error(f"{flag} {path}: no such file")
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
    tokenizer = model_tokenizer(load_checkpoint(args.model)[1]) if args.model else Tokenizer()
    run = Run(args, tokenizer, Corpus.load(args.corpus), work,
              Path(args.cache) if args.cache else D.default_cache_dir())
    results: dict = {"model": args.model, "old_model": args.old_model, "corpus": args.corpus,
                     "heldout": args.heldout, "command": " ".join(sys.argv)}
    runners = {1: ("bits_per_note", section_bits), 2: ("deepembed", section_deepembed),
               3: ("continuations", section_continuations), 4: ("finetune", section_finetune),
               5: ("infill", section_infill), 6: ("live", section_live)}
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
                tmp.write_text(json.dumps(jsonable(results), indent=1))
                os.replace(tmp, path)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

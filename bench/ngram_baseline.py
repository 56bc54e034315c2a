"""A Kneser-Ney n-gram baseline for held-out files, scored as bench/bits_by_position.py scores the network.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/ngram_baseline.py --train data/pretrain_v3c \
        --set groove-val=runs/eval/groove_val.txt --set pop909-test=runs/eval/pop909_test_raw.txt \
        --threads 1 --json out.json
    # drums only: the Groove train split (a list of the info.csv rows whose split is train)
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/ngram_baseline.py --train-list groove-train=LIST \
        --set groove-val=runs/eval/groove_val.txt --threads 1

A modified Kneser-Ney n-gram (core.evaluate.ngram, --order, 5 by default) is counted on every MIDI file under
each --train folder (recursive) and in each --train-list NAME=LIST (one path a line), each read as the held-out
files are: read_midi(path)[0].token_view() encoded with the tokenizer of --model (the bundled base model).
A --set is NAME=PATH as in bits_by_position (a folder, or a list of paths). Each held-out piece is scored
whole, the BOS given and every other token once, from the n-1 tokens before it (PAD before the piece's
start); bits per note overall and by position (bits_by_position.PositionTally: the same buckets and sums).
A file that core.midi refuses is counted as skipped, in training and in scoring. A held-out file that is
also a training file (the same resolved path or the same bytes) stops the run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.bits_by_position import POSITION_EDGES, PositionTally, set_files  # noqa: E402
from core.evaluate.ngram import KneserNeyNGram  # noqa: E402


def named(spec: str, flag: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"error: {flag} wants NAME=PATH, not {spec!r}")
    return name, path


def tokenize(files: list[Path], tok) -> tuple[list[np.ndarray], int]:
    """Token ids of each file as bits_by_position reads it, and how many files core.midi refused."""
    from core.evaluate.files import file_tokens
    out, skipped = [], 0
    for f in files:
        try:
            out.append(np.asarray(file_tokens(f, tok), dtype=np.int64))
        except Exception:
            skipped += 1
    return out, skipped


def digest(f: Path) -> str:
    return hashlib.sha1(f.read_bytes()).hexdigest()


def check_disjoint(train: list[Path], sets: dict[str, list[Path]]) -> None:
    paths = {f.resolve() for f in train}
    hashes = {digest(f) for f in train}
    for name, files in sets.items():
        shared = [str(f) for f in files if f.resolve() in paths or digest(f) in hashes]
        if shared:
            raise SystemExit(f"error: {len(shared)} files of {name} are training files, e.g. {shared[0]}")


def model_tokenizer(model: str | None = None):
    from core.network.checkpoint import read_checkpoint_meta
    from core.paths import base_model
    from core.tokenizer import Tokenizer
    return Tokenizer.from_dict(read_checkpoint_meta(str(model or base_model()))["tokenizer"])


def fit(files: list[Path], tok, order: int) -> tuple[KneserNeyNGram, dict]:
    """The n-gram counted on `files`, and what it was counted on and how long that took."""
    t0 = time.perf_counter()
    seqs, skipped = tokenize(files, tok)
    t1 = time.perf_counter()
    ngram = KneserNeyNGram(order, tok.vocab_size, tok.pad_id).fit(seqs)
    t2 = time.perf_counter()
    return ngram, {"order": order, "train_files": len(seqs), "train_skipped": skipped,
                   "train_tokens": ngram.trained_tokens, "ngram_types": sum(len(o.grams) for o in ngram.orders),
                   "tokenize_s": t1 - t0, "count_s": t2 - t1}


def score(ngram: KneserNeyNGram, files: list[Path], tok) -> dict:
    """Bits per note of whole pieces, overall and by position (bits_by_position's summary)."""
    t0 = time.perf_counter()
    is_note = np.zeros(tok.vocab_size, dtype=bool)
    is_note[list(tok.ids_of_kind("pitch"))] = True
    ids, skipped = tokenize(files, tok)
    tally = PositionTally()
    for seq in ids:
        tally.add(ngram.token_bits(seq, 1), is_note[seq[1:]])
    tokens = int(tally.tokens.sum())
    return {"files": len(ids), "skipped": skipped, **tally.summary(), "tokens": tokens,
            "bits_per_token": float(tally.bits.sum()) / max(tokens, 1), "score_s": time.perf_counter() - t0}


def run(args: argparse.Namespace) -> dict:
    from core.training.data import find_midi_files
    tok = model_tokenizer(args.model)
    train = [f for d in args.train for f in find_midi_files(d)]
    train += [f for spec in args.train_list for f in set_files(named(spec, "--train-list")[1])]
    if not train:
        raise SystemExit("error: no training file (--train DIR or --train-list NAME=LIST)")
    sets = {name: set_files(path) for name, path in (named(s, "--set") for s in args.set)}
    check_disjoint(train, sets)
    ngram, info = fit(train, tok, args.order)
    return {"fit": info, "sets": {name: score(ngram, files, tok) for name, files in sets.items()}}


def print_tables(out: dict) -> None:
    f = out["fit"]
    print(f"{f['order']}-gram, modified Kneser-Ney: {f['train_files']} training files ({f['train_skipped']} skipped), "
          f"{f['train_tokens']:,} training tokens, {f['ngram_types']:,} n-gram types; "
          f"tokenizing {f['tokenize_s']:.1f} s, counting {f['count_s']:.1f} s\n")
    labels = [f"{lo}-{hi}" for lo, hi in zip(POSITION_EDGES, POSITION_EDGES[1:])] + [f"{POSITION_EDGES[-1]}-"]
    print("| set | files | skipped | notes | bits/token | bits/note | " + " | ".join(labels) + " |")
    print("|---" * (6 + len(labels)) + "|")
    for name, r in out["sets"].items():
        pos = {row["positions"]: row for row in r["by_position"]}
        cells = [f"{pos[lab]['bits_per_note']:.3f} ({pos[lab]['notes']})" if lab in pos else "" for lab in labels]
        print(f"| {name} | {r['files']} | {r['skipped']} | {r['notes']} | {r['bits_per_token']:.3f} | "
              f"{r['bits_per_note']:.3f} | " + " | ".join(cells) + " |")
    print("\nBy position: bits/note of the tokens at those indices in the piece (notes among them).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", action="append", default=[], type=Path, metavar="DIR")
    p.add_argument("--train-list", action="append", default=[], metavar="NAME=LIST")
    p.add_argument("--set", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--model", help="whose tokenizer (default: the bundled base model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    out = run(args)
    print_tables(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Choose the base model's size and training mix by short runs at one equal wall-clock budget.

    .venv/bin/python bench/sweep_base.py --corpus data/corpus --pretrain data/pretrain --work runs/sweep \
        --budget 200 --runs 6x128 6x192 8x256 6x128:noflag 6x128:infill0 tf6x128:1e-3 tf6x128:3e-3 tf6x128:6e-4

A run `LxD[:variant]` trains an RWKV-7 of L layers and width D with `core.training.train.run_training` for --budget
seconds (the schedule fits the budget), with infill examples (--infill-share) and the Flat token of
one-velocity pieces; variants: `noflag` (the Flat token left out), `infill0` (no infill examples), `rosa` (a
ROSA-style recall of the longest earlier match inside the network, bench/rosa.py).
A run `tfLxD:LR` trains a causal Transformer with about the parameters of that RWKV size at learning rate LR
for as many steps as the plain RWKV run of that size made (`tf` runs come after it), or with --tf-by-time for
--budget seconds like the RWKV runs; on plain windows;
its weights go to --work/tfLxD_LR/transformer.pt (unless --no-save-tf), for bench/eval_base.py's test scores.
Every model is scored on the validation split of each collection (bits per note, core/evaluate/scoring.py),
on each --test list of files (read as `rwkv-music eval` reads them, windows of --ctx tokens), and
the RWKV models also on bar infill of the POP909 validation songs: bits per note of the missing bars given
the bars before and after, against given the bars before only. Results go to --work/sweep.json and print as
tables.

A long budget on a 2-core machine: start one process per run at once, each with --threads 1 and its own
--work, so that every run shares the CPU alike (`--tf-by-time` lets a Transformer run without its RWKV's):

    for r in 6x128 6x192 6x128:rosa tf6x128:2e-3; do nohup .venv/bin/python bench/sweep_base.py --budget 75m \
        --threads 1 --ctx 1024 --corpus data/pop_stage data/m21_stage --pretrain data/pretrain \
        --work runs/long/${r/:/_} --runs $r --tf-by-time --test pop=pop909_test_raw.txt > runs/long/${r/:/_}.log & done

(the README's "Base model" section has the run of 2026-12-06 and its exact command).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.corpus import Corpus, link_folder  # noqa: E402
from bench.eval_base import load_model, log  # noqa: E402
from bench.rosa import load_recall_model, with_recall  # noqa: E402
from core.evaluate.tables import print_table  # noqa: E402
from core.evaluate.scoring import PieceSet, infill_bits, torch_window_bits  # noqa: E402
from core.evaluate.transformer import (CausalTransformer, Schedule, matched_config, parameter_count,  # noqa: E402
                                       save_transformer, train_causal_lm)
from core.training import data as D  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.training.train import run_training  # noqa: E402
from core.training.train_config import TrainConfig  # noqa: E402
from core.training.train_options import parse_duration  # noqa: E402


def validation_sets(corpora: list[Corpus], tok: Tokenizer, work: Path, heldout: str, per_collection: int,
                    cache: Path) -> dict[str, list[D.Piece]]:
    out = {}
    for corpus in corpora:
        for collection in sorted(corpus.collections() - {heldout}):
            files = corpus.files(("validation",), only=collection)[:per_collection]
            folder = link_folder(corpus, files, work / "val" / collection)
            out[collection], _ = D.scan_folder(folder, tok, cache_dir=cache)
    return out


def test_sets(specs: list[str], tok: Tokenizer) -> dict[str, tuple[list[str], list[list[int]]]]:
    """NAME=LIST: the files a list names (one path a line), each read as `rwkv-music eval` reads it."""
    from core.evaluate.files import file_tokens
    out = {}
    for spec in specs:
        name, _, listing = spec.partition("=")
        paths = [line.strip() for line in Path(listing).read_text().splitlines() if line.strip()]
        out[name] = (paths, [file_tokens(path, tok) for path in paths])
    return out


def rwkv_parameters(layers: int, width: int, vocab_size: int) -> int:
    from core.network.model import ModelConfig, RWKV7
    return parameter_count(RWKV7(ModelConfig(vocab_size=vocab_size, n_layer=layers, n_embd=width)))


def score(logits_fn, sets: dict, tok: Tokenizer, ctx: int) -> dict[str, float]:
    """Bits per note of each set: a list of D.Piece, or (names, token ids)."""
    rows = {}
    for name, pieces in sets.items():
        names, ids = pieces if isinstance(pieces, tuple) else ([p.path for p in pieces], [p.tokens for p in pieces])
        ps = PieceSet.build(names, ids, tok, ctx)
        rows[name] = ps.summary(torch_window_bits(logits_fn, ps.windows, tok.pad_id))["bits_per_note"]
    return rows


@contextlib.contextmanager
def recall_models():
    """run_training builds its fresh models with_recall (bench/rosa.py) meanwhile."""
    from core.training import train
    build = train.build_model

    def build_with_recall(config, tokenizer):
        model, meta = build(config, tokenizer)
        return with_recall(model), meta

    train.build_model = build_with_recall
    try:
        yield
    finally:
        train.build_model = build


def parse_run(spec: str) -> dict:
    if spec.startswith("tf"):
        size, lr = spec[2:].split(":")
        layers, width = map(int, size.split("x"))
        return {"name": spec, "kind": "tf", "layers": layers, "width": width, "lr": float(lr)}
    size, _, variant = spec.partition(":")
    layers, width = map(int, size.split("x"))
    return {"name": spec, "kind": "rwkv", "layers": layers, "width": width, "variant": variant}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", nargs="*", default=["data/corpus"], help="corpora (tools/make_corpus.py) whose "
                   "validation splits score the runs")
    p.add_argument("--test", nargs="*", default=[], metavar="NAME=LIST",
                   help="also score each run on the files a list names (one path a line)")
    p.add_argument("--cache-dir", help="token cache (default: WORK/token_cache)")
    p.add_argument("--tf-by-time", action="store_true",
                   help="Transformer runs train for --budget seconds (default: the steps of their RWKV run)")
    p.add_argument("--pretrain", default="data/pretrain", help="folder of training pieces (links)")
    p.add_argument("--heldout", default="oneills1850")
    p.add_argument("--work", default="runs/sweep")
    p.add_argument("--budget", type=parse_duration, default=200.0, help="training per run (200, 90s, 80m)")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="RWKV peak learning rate")
    p.add_argument("--infill-share", type=float, default=0.25)
    p.add_argument("--val-pieces", type=int, default=12, help="validation pieces per collection")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-save-tf", dest="save_tf", action="store_false",
                   help="do not keep the Transformer runs' weights (default: WORK/tfLxD_LR/transformer.pt)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir) if args.cache_dir else work / "token_cache"
    tok = Tokenizer()
    sets = validation_sets([Corpus.load(c) for c in args.corpus], tok, work, args.heldout, args.val_pieces, cache)
    tests = test_sets(args.test, tok)
    results_path = work / "sweep.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for spec in args.runs:
        run = parse_run(spec)
        out = work / spec.replace(":", "_")
        t0 = time.monotonic()
        if run["kind"] == "rwkv":
            cfg = TrainConfig(data=args.pretrain, out=str(out), n_layer=run["layers"], n_embd=run["width"],
                              ctx_len=args.ctx, batch_size=args.batch, lr=args.lr, augment=True,
                              val_fraction=0.0, eval_every=10**9, checkpoint_every=10**9, cache_dir=str(cache),
                              threads=args.threads, time_budget_s=args.budget, log_every=50,
                              infill_share=0.0 if run["variant"] == "infill0" else args.infill_share,
                              dynamics_flag=run["variant"] != "noflag")
            if run["variant"] == "rosa":
                with recall_models():
                    run_training(cfg)
                model = load_recall_model(str(out / "model.pth"))
            else:
                run_training(cfg)
                model, meta = load_model(str(out / "model.pth"), "cpu")
            steps = int(torch.load(out / "resume.pt", map_location="cpu", weights_only=True)["step"])
            row = {"params": sum(p.numel() for p in model.parameters()), "steps": steps,
                   "train_seconds": round(time.monotonic() - t0), **run}
            seen = sets if run["variant"] != "noflag" else {  # what that model was trained on: no Flat
                k: [D.Piece(p.path, p.digest, np.asarray(D.without_flat(p.tokens, tok), dtype=np.int32), p.notes)
                    for p in v] for k, v in sets.items()}
            row["val"] = score(lambda x: model(x), seen, tok, args.ctx)
            row["test"] = score(lambda x: model(x), tests, tok, args.ctx)
            if "pop909" in sets:
                row["infill"] = infill_bits(model, sets["pop909"], tok, args.ctx)
        else:
            base = results.get(f"{run['layers']}x{run['width']}")
            if args.tf_by_time:
                target, schedule = rwkv_parameters(run["layers"], run["width"], tok.vocab_size), Schedule(
                    steps=10**9, batch_size=args.batch, ctx_len=args.ctx, lr=run["lr"], time_budget_s=args.budget)
            elif base is None:
                raise SystemExit(f"{spec}: run the RWKV {run['layers']}x{run['width']} first (its steps set the budget)")
            else:
                target, schedule = base["params"], Schedule(steps=base["steps"], batch_size=args.batch,
                                                            ctx_len=args.ctx, lr=run["lr"])
            pieces, _ = D.scan_folder(args.pretrain, tok, cache_dir=cache)
            torch.manual_seed(0)
            tcfg = matched_config(target, tok.vocab_size, run["width"], args.ctx)
            model = CausalTransformer(tcfg)
            info = train_causal_lm(model, pieces, tok, schedule)
            row = {"params": parameter_count(model), "steps": info["steps"], "train_seconds": round(info["seconds"]),
                   "layers_tf": tcfg.n_layer, **run}
            row["val"] = score(lambda x: model(x), sets, tok, args.ctx)
            row["test"] = score(lambda x: model(x), tests, tok, args.ctx)
            if args.save_tf:  # so that the evaluation can score the best rate on the test split
                out.mkdir(parents=True, exist_ok=True)
                save_transformer(model, out / "transformer.pt", lr=run["lr"], steps=info["steps"],
                                 tokenizer=tok.to_dict())
                row["weights"] = str(out / "transformer.pt")
        results[spec] = row
        results_path.write_text(json.dumps(results, indent=1))
        log(f"{spec}: {json.dumps(row)}")
    collections = sorted(sets)
    rows = [{"run": k, "params": v["params"], "steps": v["steps"], "s": v["train_seconds"],
             **{c: v["val"].get(c) for c in collections},
             **{f"test {t}": v.get("test", {}).get(t) for t in tests},
             "infill_ba": v.get("infill", {}).get("before_and_after"),
             "infill_b": v.get("infill", {}).get("before_only")} for k, v in results.items()]
    print_table(f"Validation bits per note after {args.budget:g} s of training (2-core CPU)", rows,
                [("run", "run", "s"), ("params", "params", "d"), ("steps", "steps", "d"), ("train s", "s", "d")]
                + [(c, c, ".3f") for c in collections]
                + [(f"test: {t}", f"test {t}", ".3f") for t in tests]
                + [("infill: before+after", "infill_ba", ".3f"), ("infill: before only", "infill_b", ".3f")])
    return 0


if __name__ == "__main__":
    sys.exit(main())

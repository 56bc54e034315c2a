"""Does training with the piece memory in the loop pay? (issue 26: "train with it in the loop, so that the
network learns what the memory cannot give").

Two fine-tunes of one base model on one folder, alike in every draw (windows, augmentation, infill layouts,
learning rate, steps), that differ in the loss only:
- plain: the network's next-token NLL, as `rwkv-music train` learns;
- memory: the NLL of the product's mixture (core/training/memory_loss.py, `rwkv-music train --memory-loss`: the
  piece memory of the window's tokens so far with the fitted gate), so the gradient asks the network only for
  what the memory does not already give.
Then both (and the base) are scored on held-out pieces, the bare network and with the piece memory, as
`bench_memory.py eval` scores them (core.evaluate.memory_bits.piece_bits: whole pieces, grammar-masked).

    .venv/bin/python bench/memory_in_loop.py --folder data/pretrain_v3c --cache-dir runs/v3cache --steps 150 \\
        --threads 2 --out runs/memory_in_loop

The windows have no memory of the piece before them (a window is the model's whole view in training);
held-out scoring runs the whole piece.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.bench_memory import encode_files, groove_files, pop909_files  # noqa: E402
from core.evaluate.bits import bits_per_note  # noqa: E402
from core.evaluate.memory_bits import piece_bits  # noqa: E402
from core.memory import MemoryMixer, PieceMemory  # noqa: E402
from core.network.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from core.paths import base_model  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.training import data as D  # noqa: E402
from core.training.memory_loss import batch_memory_columns, mixture_nll  # noqa: E402
from core.training.train_config import TrainConfig  # noqa: E402
from core.training.train_data import BatchOrder, TrainingSet  # noqa: E402
from core.training.train_example import draw_example, example_seed  # noqa: E402


def train(model, data: TrainingSet, config: TrainConfig, tok, steps: int, lr: float, with_memory: bool) -> list[float]:
    order = BatchOrder([w.n_tokens for w in data.train_windows], config.batch_size, config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        epoch, index = divmod(step, order.per_epoch)
        ids = order.indices(epoch, index)
        examples = [draw_example(data.source(i), config, tok, example_seed(config.seed, epoch, index * config.batch_size + j))
                    for j, i in enumerate(ids)]
        inputs, targets, mask = D.collate(examples, tok.pad_id)
        count = float(mask.sum())
        logits = model(inputs)
        if with_memory:
            loss = mixture_nll(logits, targets, mask, batch_memory_columns(inputs, targets, mask))
        else:
            loss = (F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none") * mask.flatten()).sum()
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item() / count)
        if step % 10 == 0 or step == steps - 1:
            print(f"  {'memory' if with_memory else 'plain'} step {step + 1}/{steps}: loss {losses[-1]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval()
    return losses


def heldout(tok, n: int, heldout_dir: Path) -> dict[str, list[list[int]]]:
    import random
    oneills = sorted((heldout_dir / "oneills1850").glob("*.mid"))
    return {"pop (POP909 validation, raw)": encode_files(tok, pop909_files("validation", n)),
            "folk (O'Neill's)": encode_files(tok, random.Random(5).sample(oneills, 3 * n)) if oneills else [],
            "drums (Groove validation)": encode_files(tok, groove_files("validation", n))}


def score(model, tok, sets) -> dict[str, tuple[float, float]]:
    out = {}
    for name, pieces in sets.items():
        if not pieces:
            continue
        bits = [piece_bits(model, tok, ids, MemoryMixer(PieceMemory())) for ids in pieces]
        notes = sum(b.notes for b in bits)
        out[name] = (bits_per_note(sum(float(b.network.sum()) for b in bits), notes),
                     bits_per_note(sum(float(b.mixed.sum()) for b in bits), notes))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(base_model()))
    p.add_argument("--folder", required=True)
    p.add_argument("--cache-dir")
    p.add_argument("--out", required=True, help="folder for the two models and results.json")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--pieces", type=int, default=12, help="held-out pieces per set (folk: 3x)")
    p.add_argument("--heldout", default="data/heldout")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, meta = load_checkpoint(args.model)
    tok = Tokenizer.from_dict(meta["tokenizer"])
    config = TrainConfig(data=args.folder, out=str(out), base=args.model, mode="full", ctx_len=args.ctx,
                         batch_size=args.batch, augment=True, infill_share=0.25, val_fraction=0.02, seed=0)
    pieces, report = D.scan_folder(args.folder, tok, cache_dir=args.cache_dir)
    data = TrainingSet.split(pieces, config, tok)
    print(f"{len(data.train_pieces)} training pieces, {len(data.train_windows)} windows of <= {args.ctx} tokens", flush=True)
    sets = heldout(tok, args.pieces, Path(args.heldout))
    results = {"base": score(base, tok, sets)}
    for arm in ("plain", "memory"):
        model, _ = load_checkpoint(args.model)
        t0 = time.perf_counter()
        losses = train(model, data, config, tok, args.steps, args.lr, arm == "memory")
        seconds = time.perf_counter() - t0
        save_checkpoint(model, str(out / f"{arm}.pth"), meta)
        results[arm] = score(model, tok, sets)
        results[f"{arm}_train"] = {"seconds": seconds, "first_loss": losses[0], "last10_loss": float(np.mean(losses[-10:]))}
        print(f"{arm}: {seconds:.0f} s of training", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n{args.steps} steps of {args.batch} windows of <= {args.ctx} tokens, lr {args.lr}, from {args.model}\n")
    print("| set | base: network | base + piece memory | plain: network | plain + memory | memory-in-loop: network | memory-in-loop + memory |")
    print("|---|---|---|---|---|---|---|")
    for name in results["base"]:
        cells = [f"{results[a][name][0]:.3f} | {results[a][name][1]:.3f}" for a in ("base", "plain", "memory")]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

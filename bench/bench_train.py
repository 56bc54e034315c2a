"""Fine-tuning throughput on this machine: tokens/s of the real training loop, per model size and mode.

Run: .venv/bin/python bench/bench_train.py [--models 6x384 4x256] [--ctx 256] [--batch 4] [--steps 4]

For each size a base model (fresh weights: throughput does not depend on what was learnt) is saved,
then `core.training.train.run_training` runs full fine-tuning, LoRA and state tuning on the test corpus
(tests/data/corpus). The first step (warm-up, allocations) is left out of the figures; tokens are
the scored (non-padding) tokens. Prints one table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.network.checkpoint import save_checkpoint  # noqa: E402
from core.network.model import ModelConfig, RWKV7  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.training.train import run_training  # noqa: E402
from core.training.train_config import TrainConfig  # noqa: E402


def bench_one(base: str, mode: str, args, work: Path) -> tuple[float, float, float]:
    """(median tokens/s, median seconds per step, first loss) of a few steps of `mode` on `base`."""
    events = []
    stamps = []

    def emit(e):
        if e.kind == "step" and e.loss is not None:
            stamps.append(time.perf_counter())
            events.append(e)

    config = TrainConfig(data=str(args.corpus), out=str(work / mode), base=base, mode=mode, ctx_len=args.ctx,
                         batch_size=args.batch, steps=args.steps, eval_every=10**9, checkpoint_every=10**9,
                         val_fraction=0.0, device=args.device, log_every=1)
    run_training(config, emit)
    steady = events[1:] or events
    step_s = [b - a for a, b in zip(stamps, stamps[1:])] or [float("nan")]
    return (statistics.median(e.tokens_per_s for e in steady), statistics.median(step_s), events[0].loss)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["6x384", "4x256"], help="LAYERSxWIDTH")
    p.add_argument("--modes", nargs="+", default=["full", "lora", "state"])
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--corpus", type=Path, default=ROOT / "tests" / "data" / "corpus")
    args = p.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"ctx {args.ctx}, batch {args.batch}, {args.steps} steps (first left out)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in args.models:
            layers, width = (int(x) for x in spec.lower().split("x"))
            torch.manual_seed(0)
            model = RWKV7(ModelConfig(n_layer=layers, n_embd=width, vocab_size=Tokenizer().vocab_size))
            params = sum(p.numel() for p in model.parameters())
            base = str(work / f"base-{spec}.pth")
            save_checkpoint(model, base, {"tokenizer": Tokenizer().to_dict()})
            for mode in args.modes:
                tps, sps, loss = bench_one(base, mode, args, work / spec)
                rows.append((f"L{layers}-D{width}", f"{params / 1e6:.1f}M", mode, tps, sps, loss))
                print(f"  done {rows[-1][0]} {mode}", file=sys.stderr, flush=True)

    header = f"{'model':<10} {'params':>7} {'mode':<6} {'tokens/s':>9} {'s/step':>7} {'loss@1':>7}"
    print(header)
    print("-" * len(header))
    for name, params, mode, tps, sps, loss in rows:
        print(f"{name:<10} {params:>7} {mode:<6} {tps:>9.0f} {sps:>7.2f} {loss:>7.3f}")


if __name__ == "__main__":
    main()

"""Time the RWKV-7 model on the CPU (float32): one-token step against the `rwkv` package on the
same checkpoint, the memory-bandwidth floor, prompt prefill, and training throughput.

Run: .venv/bin/python bench/bench_model.py [--threads 2] [--sizes L6-D384 L4-D256] [--vocab 1100]
Prints one table row per model size. Timings are medians of several repeats; on a shared machine
run it when the machine is otherwise idle.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.model import ModelConfig, RWKV7, save_checkpoint  # noqa: E402

# The `rwkv` package reads RWKV_V7_ON at import time, so it runs in its own process.
RWKV_PACKAGE_STEP = textwrap.dedent("""
    import json, os, statistics, sys, time
    os.environ["RWKV_V7_ON"] = "1"
    import torch
    torch.set_num_threads(int(sys.argv[2]))
    from rwkv.model import RWKV
    model = RWKV(model=sys.argv[1], strategy="cpu fp32")
    state = None
    for t in range(30):                       # warm-up (TorchScript profiling runs)
        _, state = model.forward([t % 7], state)
    times = []
    for r in range(int(sys.argv[3])):
        t0 = time.perf_counter()
        for t in range(50):
            _, state = model.forward([t % 7], state)
        times.append((time.perf_counter() - t0) / 50)
    print(json.dumps({"step_ms": 1e3 * statistics.median(times)}))
""")


def median_time(fn, repeats: int, inner: int = 1) -> float:
    """Median seconds per call of fn over `repeats` runs of `inner` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def make_model(n_layer: int, n_embd: int, vocab: int) -> RWKV7:
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=vocab))
    with torch.no_grad():  # trained-like weights: nothing zero
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def step_ms(model: RWKV7, batch: int, repeats: int) -> float:
    state = model.init_state(batch)
    tokens = torch.arange(batch) % 7
    holder = [state]

    def one():
        _, holder[0] = model.step(tokens, holder[0])

    for _ in range(30):
        one()
    return 1e3 * median_time(one, repeats, inner=50)


def rwkv_package_step_ms(path: Path, threads: int, repeats: int) -> float | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWKV_")}
    proc = subprocess.run([sys.executable, "-c", RWKV_PACKAGE_STEP, str(path)[: -len(".pth")], str(threads),
                           str(repeats)], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["step_ms"]


def bandwidth_floor_ms(model: RWKV7, repeats: int) -> tuple[float, float]:
    """A matrix-vector product over as many bytes as one token's step reads (every weight but
    the embedding table, of which it reads one row): the time no float32 step can beat."""
    n = sum(p.numel() for name, p in model.named_parameters() if name != "emb.weight")
    cols = model.config.n_embd
    matrix = torch.randn(n // cols, cols)
    x = torch.randn(cols)
    for _ in range(5):
        matrix @ x
    return 1e3 * median_time(lambda: matrix @ x, repeats, inner=10), matrix.numel() * 4 / 1e6


def prefill_ms(model: RWKV7, length: int, repeats: int) -> float:
    idx = torch.randint(0, model.config.vocab_size, (1, length))
    model.prefill(idx)
    return 1e3 * median_time(lambda: model.prefill(idx), repeats)


def train_tokens_per_s(model: RWKV7, batch: int, ctx: int, repeats: int) -> float:
    model.train()
    idx = torch.randint(0, model.config.vocab_size, (batch, ctx + 1))

    def fwd_bwd():
        logits = model(idx[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    fwd_bwd()
    seconds = median_time(fwd_bwd, repeats)
    model.eval()
    return batch * ctx / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", default=["L6-D384", "L4-D256"])
    ap.add_argument("--vocab", type=int, default=1100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-train", action="store_true", help="skip the (slow) training measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    header = (f"{'model':>8} {'params':>7} {'MB':>5} | {'step ms':>7} {'tok/s':>6} {'B=4 tok/s':>9} | "
              f"{'rwkv pkg ms':>11} {'speed-up':>8} | {'floor ms':>8} | {'prefill 1024 ms':>15} | "
              f"{'train tok/s (B8 T512)':>21}")
    print(f"torch {torch.__version__}, {args.threads} threads, float32, vocab {args.vocab}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            n_layer, n_embd = (int(s[1:]) for s in size.split("-"))
            model = make_model(n_layer, n_embd, args.vocab)
            path = Path(tmp) / f"{size}.pth"
            save_checkpoint(model, path, {})
            params = sum(p.numel() for p in model.parameters())
            ours = step_ms(model, 1, args.repeats)
            ours4 = step_ms(model, 4, args.repeats)
            theirs = rwkv_package_step_ms(path, args.threads, args.repeats)
            floor, mb = bandwidth_floor_ms(model, args.repeats)
            prefill = prefill_ms(model, 1024, max(3, args.repeats // 2))
            train = float("nan") if args.no_train else train_tokens_per_s(model, 8, 512, 2)
            speedup = f"{theirs / ours:7.2f}x" if theirs else "     n/a"
            theirs_s = f"{theirs:11.2f}" if theirs else f"{'n/a':>11}"
            print(f"{size:>8} {params / 1e6:6.1f}M {mb:5.0f} | {ours:7.2f} {1e3 / ours:6.0f} {4e3 / ours4:9.0f} | "
                  f"{theirs_s} {speedup} | {floor:8.2f} | {prefill:15.1f} | {train:21.0f}", flush=True)


if __name__ == "__main__":
    main()

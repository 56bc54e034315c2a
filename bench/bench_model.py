"""Time the RWKV-7 model on the CPU (float32): one-token step (our fused C++ step, and our torch-op
step) against the `rwkv` package on the same checkpoint, the memory-bandwidth floor, prompt
prefill, and training throughput.

Run: .venv/bin/python bench/bench_model.py [--threads 2] [--sizes L6-D384 L4-D256] [--vocab 1100]
Prints one table row per model size. Timings are medians of several repeats (ours and the
package's in alternating rounds). On a shared machine run it when the machine is otherwise idle:
with more runnable threads than cores, two intra-op threads make every small op wait on the
other thread and all figures (ours and the package's alike) grow several-fold.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.network.checkpoint import save_checkpoint  # noqa: E402
from core.network.model import ModelConfig, RWKV7  # noqa: E402
from core.network.step import step_tokens  # noqa: E402

# The `rwkv` package reads RWKV_V7_ON when it is imported; this script is its own process, so
# setting it here affects nothing else. Ours and theirs then run in alternating rounds, so that
# a machine whose load changes during the run treats both alike.
os.environ["RWKV_V7_ON"] = "1"
os.environ.pop("RWKV_DE_VERSION", None)
os.environ.pop("RWKV_CUDA_ON", None)


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


def step_latencies_ms(model: RWKV7, path: Path, rounds: int) -> dict[str, float]:
    """Median ms per one-token step: ours (the fused C++ step) with 1 and 4 streams, our torch-op
    step with 1 stream, the `rwkv` package (1 stream, its forward with one token) on the
    checkpoint at `path`."""
    try:
        from rwkv.model import RWKV
        theirs = RWKV(model=str(path)[: -len(".pth")], strategy="cpu fp32")
    except ImportError:
        theirs = None
    ours1 = [model.init_state(1)]
    ours4 = [model.init_state(4)]
    torch_op = [model.init_state(1)]
    # A second model over the same weight tensors for the torch-op step: a model keeps one stepper,
    # so switching one model's step backend back and forth would rebuild it inside the timed loops.
    torch_op_model = RWKV7(model.config, init=False)
    torch_op_model.load_state_dict(model.state_dict(), assign=True)
    torch_op_model.eval()
    their_state = [None]
    one, four = torch.tensor([3]), torch.arange(4) % 7

    def step_ours1():
        _, ours1[0] = step_tokens(model, one, ours1[0])

    def step_ours4():
        _, ours4[0] = step_tokens(model, four, ours4[0])

    def step_torch_op():
        _, torch_op[0] = step_tokens(torch_op_model, one, torch_op[0], "step-torch")

    def step_theirs():
        _, their_state[0] = theirs.forward([3], their_state[0])

    runs = {"ours1": step_ours1, "ours4": step_ours4, "torch_op": step_torch_op}
    if theirs is not None:
        runs["theirs"] = step_theirs
    times = {name: [] for name in runs}
    for fn in runs.values():  # warm-up (and TorchScript's profiling runs for theirs)
        for _ in range(30):
            fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(median_time(fn, 1, inner=40))
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def bandwidth_floor_ms(model: RWKV7, repeats: int) -> tuple[float, float]:
    """A vector-matrix product over as many bytes as one token's step reads (every weight but
    the embedding table, of which it reads one row): the time no float32 step can beat."""
    n = sum(p.numel() for name, p in model.named_parameters() if name != "emb.weight")
    rows = model.config.n_embd
    matrix = torch.randn(rows, n // rows)  # wide and row-major: this BLAS's fastest layout here
    x = torch.randn(1, rows)
    for _ in range(5):
        x @ matrix
    return 1e3 * median_time(lambda: x @ matrix, repeats, inner=10), matrix.numel() * 4 / 1e6


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
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--no-train", action="store_true", help="skip the (slow) training measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    header = (f"{'model':>8} {'params':>7} {'MB':>5} | {'step ms':>7} {'tok/s':>6} {'B=4 tok/s':>9} | "
              f"{'torch-op ms':>11} | {'rwkv pkg ms':>11} {'speed-up':>8} | {'floor ms':>8} | {'prefill 1024 ms':>15} | "
              f"{'train tok/s (B8 T512)':>21}")
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads} threads, float32, vocab {args.vocab}, "
          f"load average at start {load:.1f} on {os.cpu_count()} CPUs")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            n_layer, n_embd = (int(s[1:]) for s in size.split("-"))
            model = make_model(n_layer, n_embd, args.vocab)
            path = Path(tmp) / f"{size}.pth"
            save_checkpoint(model, path, {})
            params = sum(p.numel() for p in model.parameters())
            steps = step_latencies_ms(model, path, args.repeats)
            ours, ours4, theirs = steps["ours1"], steps["ours4"], steps.get("theirs")
            floor, mb = bandwidth_floor_ms(model, args.repeats)
            prefill = prefill_ms(model, 1024, max(3, args.repeats // 2))
            train = float("nan") if args.no_train else train_tokens_per_s(model, 8, 512, 2)
            speedup = f"{theirs / ours:7.2f}x" if theirs else "     n/a"
            theirs_s = f"{theirs:11.2f}" if theirs else f"{'n/a':>11}"
            print(f"{size:>8} {params / 1e6:6.1f}M {mb:5.0f} | {ours:7.2f} {1e3 / ours:6.0f} {4e3 / ours4:9.0f} | "
                  f"{steps['torch_op']:11.2f} | {theirs_s} {speedup} | {floor:8.2f} | {prefill:15.1f} | {train:21.0f}", flush=True)


if __name__ == "__main__":
    main()

"""Time the WKV-7 backends on the CPU: forward and forward+backward, float32, 2 threads.
(the reference, the chunked form at each --chunks size, and the C++ loop of core/network/cpu_kernels.cpp)

Run: .venv/bin/python bench/bench_wkv.py [--chunks 16 32] [--repeat 5] [--threads 2] [--cpu-time]
Prints one table row per (shape, backend), with the memory autograd keeps for backward.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.network import cpu_kernels  # noqa: E402
from core.network.wkv import wkv7, wkv7_chunked, wkv7_reference  # noqa: E402

SHAPES = [(8, 512, 6, 64), (1, 1024, 6, 64)]


def rwkv_inputs(B, T, H, N, dtype=torch.float32, seed=0):
    """Inputs shaped like RWKV-7's: w in the model's log-decay range, a = -kk, b = kk * rate."""
    g = torch.Generator().manual_seed(seed)
    rand = functools.partial(torch.randn, B, T, H, N, dtype=dtype, generator=g)
    kk = torch.nn.functional.normalize(rand(), dim=-1)
    w = -0.6065 * torch.sigmoid(rand())
    return rand(), w, rand(), rand(), -kk, kk * torch.sigmoid(rand())


def best_time(fn, repeat, clock):
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def saved_for_backward_mib(op, leaves):
    """Memory autograd keeps between forward and backward (distinct storages)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op(*leaves)
    return sum(storages.values()) / 2**20


def measure(op, inputs, repeat, clock):
    """(forward s, forward+backward s, MiB saved for backward)."""
    B, T, H, N = inputs[0].shape
    state = torch.randn(B, H, N, N) * 0.1

    def forward():
        with torch.no_grad():
            op(*inputs, state)

    leaves = [x.clone().requires_grad_() for x in (*inputs, state)]

    def forward_backward():
        y, s = op(*leaves)
        (y.square().sum() + s.square().sum()).backward()

    forward()  # warm-up
    return (best_time(forward, repeat, clock), best_time(forward_backward, repeat, clock),
            saved_for_backward_mib(op, leaves))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-time", action="store_true",
                        help="process CPU time instead of wall time: steadier on a shared machine, "
                             "comparable to wall time with --threads 1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter

    # The reference is one to two orders slower: one run of it is precise enough.
    backends = [("reference", wkv7_reference, 1)]
    backends += [(f"chunked L={c}", functools.partial(wkv7_chunked, chunk=c), args.repeat)
                 for c in args.chunks]
    if cpu_kernels.load_extension() is not None:  # what "train" runs on the CPU in float32
        backends.append(("C++ loop", functools.partial(wkv7, backend="train"), args.repeat))
    print(f"torch {torch.__version__}, {args.threads} threads, float32, "
          f"{'CPU' if args.cpu_time else 'wall'} time, chunked: best of {args.repeat}")
    print(f"{'B,T,H,N':<16}{'backend':<16}{'fwd ms':>10}{'fwd+bwd ms':>12}{'tokens/s (f+b)':>16}"
          f"{'saved MiB':>11}")
    for shape in SHAPES:
        inputs = rwkv_inputs(*shape)
        for name, op, repeat in backends:
            fwd, fwd_bwd, saved = measure(op, inputs, repeat, clock)
            tokens = shape[0] * shape[1]
            print(f"{','.join(map(str, shape)):<16}{name:<16}{fwd * 1e3:>10.1f}{fwd_bwd * 1e3:>12.1f}"
                  f"{tokens / fwd_bwd:>16.0f}{saved:>11.0f}", flush=True)


if __name__ == "__main__":
    main()

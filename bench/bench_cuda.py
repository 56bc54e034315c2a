"""Benchmark the WKV-7 CUDA kernel on the GPU: the operator alone and whole-model training.

Run: .venv/bin/python bench/bench_cuda.py [--ctx 4096] [--batch 4] [--models 12x768 6x384 4x256]

Table 1, WKV-7 forward+backward (bf16 in, fp32 state) per backend: our kernel, the portable
chunked PyTorch path (core.network.wkv.wkv7_chunked), and flash-linear-attention's chunk_rwkv7 when it is
installed: milliseconds, peak extra memory, and the error of y against the float32 chunked path.
Table 2, training steps of core.network.model.RWKV7 under bf16 autocast with AdamW: tokens/s and peak
memory, with the WKV through the kernel, through the chunked path, and through the kernel with
per-block gradient checkpointing. Needs a CUDA GPU; without one it says so and exits.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.network.cuda import build  # noqa: E402
from tools.cuda_training import checkpointed, mixed_precision  # noqa: E402
from core.network.wkv import wkv7_chunked  # noqa: E402

HEAD = 64


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return 0


def peak_mib(device, baseline):
    if device.type != "cuda":
        return float("nan")
    return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20


def timed(fn, device, warmup, repeat):
    """Median seconds of fn() over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def wkv_inputs(B, T, H, device, dtype, seed=0):
    """RWKV-7-like operator inputs: log decay in the model's range, a = -kk, b = kk * rate."""
    g = torch.Generator().manual_seed(seed)

    def randn():
        return torch.randn(B, T, H, HEAD, generator=g)

    kk = F.normalize(randn(), dim=-1)
    r, k, v = randn() * 0.5, randn() * 0.5, randn()
    w = -0.606531 * torch.sigmoid(2 * randn())
    state = torch.randn(B, H, HEAD, HEAD, generator=g) * 0.3
    seqs = [x.to(device, dtype) for x in (r, w, k, v, -kk, kk * torch.sigmoid(randn()))]
    return seqs, state.to(device)


def wkv_backends(device):
    """name -> fn(r, w, k, v, a, b, state) -> (y, final state S[value, key])."""
    backends = {}
    if device.type == "cuda" and build.load_extension(device) is not None:
        from core.network.cuda import wkv7_cuda
        backends["cuda kernel"] = wkv7_cuda
    backends["torch chunked"] = wkv7_chunked
    try:
        from fla.ops.rwkv7 import chunk_rwkv7
    except Exception as error:  # not installed, or no Triton for this GPU
        print(f"(flash-linear-attention not usable: {type(error).__name__}: {error})")
    else:
        def fla(r, w, k, v, a, b, state):
            # fla keeps the state transposed ([key, value]) and must be told scale 1.0.
            y, s = chunk_rwkv7(r, w, k, v, a, b, scale=1.0,
                               initial_state=state.transpose(-1, -2).contiguous(),
                               output_final_state=True)
            return y, s.transpose(-1, -2)
        if device.type == "cuda":
            backends["fla chunk_rwkv7"] = fla
    return backends


def bench_wkv(shapes, device, warmup, repeat):
    print(f"\nWKV-7 forward+backward, bf16 inputs, fp32 state, N={HEAD} ({device})")
    print(f"{'shape B,T,H':>16} | {'backend':>16} | {'fwd ms':>8} | {'fwd+bwd ms':>10} | "
          f"{'peak MiB':>9} | {'y rel err':>9}")
    backends = wkv_backends(device)
    for B, T, H in shapes:
        seqs, state = wkv_inputs(B, T, H, device, torch.bfloat16)
        with torch.no_grad():
            y_ref, _ = wkv7_chunked(*(x.float() for x in seqs), state)
        for name, op in backends.items():
            leaves = [x.clone().requires_grad_() for x in seqs]
            s0 = state.clone().requires_grad_()
            dy = torch.randn_like(seqs[0])

            def forward():
                with torch.no_grad():
                    op(*seqs, state)

            def forward_backward():
                y, s = op(*leaves, s0)
                torch.autograd.backward((y, s), (dy, torch.ones_like(s)))

            try:
                fwd = timed(forward, device, warmup, repeat)
                base = reset_peak(device)
                both = timed(forward_backward, device, warmup, repeat)
                peak = peak_mib(device, base)
                with torch.no_grad():
                    y, _ = op(*seqs, state)
                err = ((y.float() - y_ref).norm() / y_ref.norm()).item()
            except Exception as error:  # e.g. out of memory for the chunked path
                print(f"{f'{B},{T},{H}':>16} | {name:>16} | failed: {type(error).__name__}: "
                      f"{str(error)[:80]}")
                continue
            finally:
                leaves = s0 = None
            print(f"{f'{B},{T},{H}':>16} | {name:>16} | {fwd * 1e3:8.2f} | {both * 1e3:10.2f} | "
                  f"{peak:9.0f} | {err:9.1e}")


def use_block_checkpointing(model):
    """Recompute each block's time-mix and channel-mix in backward instead of storing them."""
    for block in model.blocks:
        for part in (block.att, block.ffn):
            plain = part.forward
            part.forward = lambda *args, _plain=plain, **kw: checkpointed(_plain, *args, **kw)


def bench_training(models, batch, ctx, device, warmup, repeat, vocab):
    from core.network.model import ModelConfig, RWKV7
    print(f"\nTraining step (bf16 autocast, AdamW), batch {batch} x ctx {ctx}, vocab {vocab} "
          f"({device})")
    print(f"{'model':>8} | {'params M':>8} | {'WKV path':>22} | {'tokens/s':>9} | "
          f"{'step ms':>8} | {'peak MiB':>9}")
    variants = [("cuda kernel", False, False), ("cuda kernel + ckpt", False, True),
                ("torch chunked", True, False)]
    if device.type != "cuda":
        variants = [("torch chunked", True, False)]
    for n_layer, n_embd in models:
        for label, chunked, ckpt in variants:
            torch.manual_seed(0)
            model = RWKV7(ModelConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)).to(device)
            if ckpt:
                use_block_checkpointing(model)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
            data = torch.randint(0, vocab, (batch, ctx + 1), device=device)

            def step():
                with mixed_precision(device):
                    logits = model(data[:, :-1])
                loss = F.cross_entropy(logits.float().view(-1, vocab), data[:, 1:].reshape(-1))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

            saved = os.environ.get(build.DISABLE_ENV)
            if chunked:  # the CUDA backend declines, core.network.wkv falls back to the chunked path
                os.environ[build.DISABLE_ENV] = "1"
            try:
                base = reset_peak(device)
                seconds = timed(step, device, warmup, repeat)
                peak = peak_mib(device, base)
                print(f"{f'{n_layer}x{n_embd}':>8} | {params:8.1f} | {label:>22} | "
                      f"{batch * ctx / seconds:9.0f} | {seconds * 1e3:8.1f} | {peak:9.0f}")
            except Exception as error:
                print(f"{f'{n_layer}x{n_embd}':>8} | {params:8.1f} | {label:>22} | failed: "
                      f"{type(error).__name__}: {str(error)[:80]}")
            finally:
                if saved is None:
                    os.environ.pop(build.DISABLE_ENV, None)
                else:
                    os.environ[build.DISABLE_ENV] = saved
                del model, optimiser


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["12x768", "6x384", "4x256"],
                        help="LAYERSxWIDTH sizes for the training table")
    parser.add_argument("--vocab", type=int, default=0, help="0: the tokenizer's vocabulary")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: smoke test
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_cuda.py needs a CUDA GPU and none is available (torch "
              f"{torch.__version__}, CUDA build: {torch.version.cuda}). Nothing to measure.")
        return 0
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, capability "
              f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}, torch "
              f"{torch.__version__}, CUDA {torch.version.cuda}")
    models = [tuple(int(x) for x in m.split("x")) for m in args.models]
    if args.vocab:
        vocab = args.vocab
    else:
        from core.tokenizer import Tokenizer
        vocab = Tokenizer().vocab_size
    shapes = sorted({(args.batch, args.ctx, n_embd // HEAD) for _, n_embd in models},
                    key=lambda s: -s[2])
    bench_wkv(shapes, device, args.warmup, args.repeat)
    bench_training(models, args.batch, args.ctx, device, args.warmup, args.repeat, vocab)
    return 0


if __name__ == "__main__":
    sys.exit(main())

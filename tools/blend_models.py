"""Blend two checkpoints of one architecture and vocabulary: weights = A + t * (B - A).

    python tools/blend_models.py A.pth B.pth --t 0.6 -o blend.pth

A fine-tune B that learnt something new (drums) but drifted on what A knew (folk tunes) often keeps most of
both at a point on the line between them; measure t on validation data, never on the test pieces. The result
keeps B's metadata, with the blend recorded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def blend(a_path: str, b_path: str, t: float, out: str) -> None:
    import torch

    from core.network.checkpoint import load_checkpoint, save_checkpoint
    if not 0.0 <= t <= 1.0:
        raise SystemExit(f"error: --t is from 0 (A) to 1 (B), not {t:g}")
    a, meta_a = load_checkpoint(a_path)
    b, meta_b = load_checkpoint(b_path)
    if meta_a.get("tokenizer") != meta_b.get("tokenizer"):
        raise SystemExit("error: the two models have different vocabularies")
    sa, sb = a.state_dict(), b.state_dict()
    if {k: v.shape for k, v in sa.items()} != {k: v.shape for k, v in sb.items()}:
        raise SystemExit("error: the two models have different shapes")
    with torch.no_grad():
        b.load_state_dict({k: sa[k] + t * (sb[k] - sa[k]) for k in sb})
    save_checkpoint(b, out, {**meta_b, "blend": {"a": Path(a_path).name, "b": Path(b_path).name, "t": t}})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--t", type=float, required=True, help="0: A, 1: B")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args(argv)
    blend(args.a, args.b, args.t, args.out)
    print(f"{args.out}: {1 - args.t:g} x {args.a} + {args.t:g} x {args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

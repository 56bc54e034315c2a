"""Bits per note of models on held-out files read as a user's raw files, overall and by position in the piece.

    .venv/bin/python bench/bits_by_position.py --model resources/rwkv7-music-base.pth --model runs/v3/model.pth \
        --set pop909-test=lists/pop909_test.txt --set groove-val=data/groove/validation --threads 2 --json out.json

Each file is read and tokenized as `rwkv-music eval` does (core.midi, the model's own tokenizer) and scored
whole from the zero state, the recurrent state carried across chunks: the bare network, every token once.
A --set is NAME=PATH, PATH a folder of MIDI files or a text file listing one path a line. By position: the
bits of the tokens whose index in the piece falls in a bucket (POSITION_EDGES) over the notes (Pitch tokens)
among them, so a falling row means the network uses what it heard earlier in the piece.
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

from core.evaluate.bits import bits_per_note, nats_to_bits  # noqa: E402

POSITION_EDGES = (0, 512, 1024, 2048, 4096, 8192)
CHUNK = 2048  # tokens per parallel forward; the state carries across chunks


class PositionTally:
    """Bits and notes of whole pieces summed by the position of each scored token (POSITION_EDGES)."""

    def __init__(self) -> None:
        self.edges = [*POSITION_EDGES, 10 ** 9]
        self.bits, self.notes, self.tokens = (np.zeros(len(self.edges) - 1) for _ in range(3))

    def add(self, b: np.ndarray, target_is_note: np.ndarray) -> None:
        """One piece: b[i] the bits of token i + 1 (the BOS is given), target_is_note[i] whether it is a Pitch."""
        for k, (lo, hi) in enumerate(zip(self.edges, self.edges[1:])):
            # position of a target = its index in the piece (the BOS is 0)
            sl = slice(max(lo - 1, 0), max(hi - 1, 0))
            self.bits[k] += b[sl].sum()
            self.notes[k] += target_is_note[sl].sum()
            self.tokens[k] += len(b[sl])

    def summary(self) -> dict:
        rows = []
        for k, (lo, hi) in enumerate(zip(self.edges, self.edges[1:])):
            if self.tokens[k]:
                rows.append({"positions": f"{lo}-{hi}" if hi < 10 ** 9 else f"{lo}-", "tokens": int(self.tokens[k]),
                             "notes": int(self.notes[k]), "bits_per_note": bits_per_note(self.bits[k], self.notes[k])})
        return {"bits_per_note": bits_per_note(self.bits.sum(), self.notes.sum()), "notes": int(self.notes.sum()),
                "by_position": rows}


def set_files(path: str) -> list[Path]:
    from core.training.data import find_midi_files
    p = Path(path)
    if p.is_dir():
        return find_midi_files(p)
    if p.is_file() and p.suffix.lower() not in (".mid", ".midi"):
        files = [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise SystemExit(f"error: {path} lists {len(missing)} missing files, e.g. {missing[0]}")
        return files
    if p.is_file():
        return [p]
    raise SystemExit(f"error: no such folder or list: {path}")


@torch.no_grad()
def token_bits(model, ids: list[int]) -> np.ndarray:
    """-log2 p(ids[i+1] | ids[:i+1]) for every i, from the zero state."""
    seq = torch.tensor(ids, dtype=torch.long)
    state, out = None, []
    for begin in range(0, len(ids) - 1, CHUNK):
        chunk = seq[begin:min(begin + CHUNK, len(ids) - 1)]
        logits, state = model(chunk[None], state=state, return_state=True)
        out.append(nats_to_bits(F.cross_entropy(logits[0].float(), seq[begin + 1:begin + 1 + len(chunk)],
                                                reduction="none")))
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def score(model_path: str, files: list[Path]) -> dict:
    from core.network.checkpoint import load_checkpoint
    from core.evaluate.files import file_tokens
    from core.tokenizer import Tokenizer
    model, meta = load_checkpoint(model_path)
    model.eval()
    tok = Tokenizer.from_dict(meta["tokenizer"])
    is_note = np.zeros(tok.vocab_size, dtype=bool)
    is_note[list(tok.ids_of_kind("pitch"))] = True
    tally = PositionTally()
    skipped = 0
    for f in files:
        try:
            ids = file_tokens(f, tok)
        except Exception:  # a file core.midi refuses is counted, not scored
            skipped += 1
            continue
        tally.add(token_bits(model, ids), is_note[np.asarray(ids[1:])])
    return {"model": model_path, "files": len(files) - skipped, "skipped": skipped, **tally.summary()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--set", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = {}
    for s in args.set:
        name, sep, path = s.partition("=")
        if not sep:
            raise SystemExit(f"error: --set wants NAME=PATH, not {s!r}")
        sets[name] = set_files(path)
    results = {}
    for name, files in sets.items():
        for m in args.model:
            t0 = time.monotonic()
            r = score(m, files)
            results.setdefault(name, []).append(r)
            pos = "  ".join(f"{row['positions']}: {row['bits_per_note']:.2f}" for row in r["by_position"])
            print(f"{name:14s} {m}: {r['bits_per_note']:.3f} bits/note ({r['files']} files, {r['notes']} notes, "
                  f"{time.monotonic() - t0:.0f} s) | {pos}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

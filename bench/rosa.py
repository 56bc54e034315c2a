"""A ROSA-style recall inside the network, for measuring whether it pays at the bundled size (issue 26).

RWKV-8's ROSA finds, at each position, the longest suffix of the sequence so far that occurred before and
returns what followed its earlier occurrence. Here that operator runs on the token stream itself (not, as in
RWKV-8, on binarised hidden states) and what it returns enters the network at its input: the embedding of the
recalled token and of the match's length are added to the token's own embedding. The network then learns
when to trust the recall, where core.memory mixes the same kind of match in after the network, with a fitted gate.

bench/sweep_base.py trains it (variant `LxD:rosa`); the lookup works within what one forward is given (a
window, or a chunk of core.evaluate.scoring.EVAL_CHUNK tokens of a whole piece). Run as a script, this file scores
a plain run and a recall run of the sweep beside the product's piece memory, whole files as `rwkv-music eval`
reads them (the memory's gate as shipped):

    .venv/bin/python bench/rosa.py runs/long/6x128/6x128/model.pth runs/long/6x128_rosa/6x128_rosa/model.pth \
        --files oneills_test.txt
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_ORDER = 32  # longest match looked for, in tokens; in 1,024-token windows a longer one rarely differs
_HASH = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the rolling hash


def longest_earlier_match(ids: np.ndarray, max_order: int = MAX_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """For each row and position t of ids [B, T]: (the token after the most recent earlier occurrence of the
    longest suffix of ids[row, :t+1] of at most max_order tokens that occurred before, that suffix's length).
    No earlier occurrence: (-1, 0). An occurrence may overlap the suffix (ending at any t' < t)."""
    ids = np.asarray(ids, dtype=np.int64)
    B, T = ids.shape
    recalled = np.full((B, T), -1, dtype=np.int64)
    order = np.zeros((B, T), dtype=np.int64)
    x = ids.astype(np.uint64) + np.uint64(1)
    rows = np.repeat(np.arange(B), T).reshape(B, T)
    pos = np.tile(np.arange(T), (B, 1))
    h = x.copy()  # h[:, t]: hash of the k tokens ending at t (valid for t >= k - 1)
    for k in range(1, min(max_order, T) + 1):
        if k > 1:
            h[:, k - 1:] = h[:, k - 2:T - 1] * _HASH + x[:, k - 1:]
        r, p, key = rows[:, k - 1:].ravel(), pos[:, k - 1:].ravel(), h[:, k - 1:].ravel()
        s = np.lexsort((p, key, r))  # by row, then hash, then position: an occurrence follows the one before
        same = (r[s][1:] == r[s][:-1]) & (key[s][1:] == key[s][:-1])
        at, before = s[1:][same], s[:-1][same]
        if not len(at):
            break  # no suffix of this length repeats, so no longer one does
        rr, tt, pp = r[at], p[at], p[before]
        recalled[rr, tt] = ids[rr, pp + 1]
        order[rr, tt] = k
    return recalled, order


class RecallEmbedding(nn.Module):
    """The token embedding plus the embeddings of the recalled token (vocab_size: none) and of the match's
    length. Keeps the token table as `weight`, so the model's own code that reads emb.weight still works."""

    def __init__(self, emb: nn.Embedding, max_order: int = MAX_ORDER) -> None:
        super().__init__()
        vocab, width = emb.weight.shape
        self.weight = emb.weight
        self.max_order = max_order
        self.recall = nn.Embedding(vocab + 1, width)
        self.order = nn.Embedding(max_order + 1, width)
        with torch.no_grad():  # as small as the token table's own start (core.network.model.init_weights)
            self.recall.weight.uniform_(-1e-4, 1e-4)
            self.order.weight.uniform_(-1e-4, 1e-4)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        recalled, order = longest_earlier_match(idx.detach().cpu().numpy(), self.max_order)
        recalled = torch.from_numpy(np.where(recalled < 0, self.weight.shape[0], recalled)).to(idx.device)
        order = torch.from_numpy(order).to(idx.device)
        return F.embedding(idx, self.weight) + self.recall(recalled) + self.order(order)


def with_recall(model: nn.Module) -> nn.Module:
    """The RWKV-7 model with its embedding replaced by RecallEmbedding (same token table)."""
    model.emb = RecallEmbedding(model.emb)
    return model


def load_recall_model(path: str):
    """A model that bench/sweep_base.py trained with_recall, from its checkpoint (read without executing code)."""
    from core.network.checkpoint import META_KEY, config_from_state_dict, safe_load
    from core.network.model import RWKV7
    sd = safe_load(path, "cpu")
    sd.pop(META_KEY, None)
    plain = {k: v for k, v in sd.items() if not k.startswith(("emb.recall.", "emb.order."))}
    model = with_recall(RWKV7(config_from_state_dict(plain), init=False))
    model.load_state_dict(sd)
    return model.eval()


def main(argv=None) -> int:
    import argparse
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.eval_base import load_model
    from core.evaluate.bits import bits_per_note
    from core.evaluate.files import file_tokens
    from core.evaluate.memory_bits import piece_bits
    from core.evaluate.tables import print_table
    from core.memory import MemoryMixer, PieceMemory
    from core.tokenizer import Tokenizer
    ap = argparse.ArgumentParser(description="a recall run beside the piece memory")
    ap.add_argument("plain")
    ap.add_argument("recall")
    ap.add_argument("--files", required=True, help="a list of MIDI files, one a line")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = Tokenizer()
    pieces = [file_tokens(line.strip(), tok) for line in Path(args.files).read_text().splitlines() if line.strip()]
    rows = []
    for name, model in (("plain", load_model(args.plain, "cpu")[0]), ("with the recall", load_recall_model(args.recall))):
        bits = [piece_bits(model, tok, ids, MemoryMixer(PieceMemory(), None)) for ids in pieces]
        notes = sum(b.notes for b in bits)
        rows.append({"run": name, "notes": notes,
                     "network": bits_per_note(sum(float(b.network.sum()) for b in bits), notes),
                     "mixed": bits_per_note(sum(float(b.mixed.sum()) for b in bits), notes)})
    print_table(f"Bits per note of {len(pieces)} whole files", rows,
                [("run", "run", "s"), ("notes", "notes", "d"), ("network (grammar-masked)", "network", ".3f"),
                 ("+ piece memory (default)", "mixed", ".3f")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where the bits go once the memories are mixed in, and what else was tried to cut them (issue 25's style goal:
10 O'Neill's tunes as the user's folder, other tunes of the collection at most 55% of the bare network's bits
with the defaults; the memories alone give 59-61%, the trained style nothing more on this base model).

    .venv/bin/python bench/memory_levers.py --heldout data/heldout --corpus data/corpus --draws 2

The folder and test tunes are bench_memory.py style's draws (random.Random(3): 10 tunes as the folder, 30 others
as the test). Each test tune is read once by the network (its state carried from the first token); every
variant then mixes the same distributions with the product's folder and piece memories (core.memory), masked
by the grammar, and scores the true tokens:

- where the bits are: by the longest context of the tune so far that the piece memory matched;
- online gate: the piece gate learns on each tune as it is read (SGD on the mixture's log loss);
- forgetting: each context's counts decay by a factor whenever it recurs (recent continuations weigh more);
- intervals: a second piece memory over the tune with each pitch read as its step from the previous pitch
  (a motif restated a third higher is a repeat there), mixed on top with its own gate fitted on validation
  pieces of the pretraining corpus (--corpus);
- corpus: the folk collections the network was trained on (Ryan's and Essen, --corpus) as a folder memory;
- dynamic evaluation (--dynamic): the network itself learns each tune as it reads it (Adam on every chunk
  after scoring it), with the memories on top.
"""
from __future__ import annotations

import argparse
import copy
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.bench_memory import corpus_files, encode_files, pop909_files, print_table  # noqa: E402
from core.evaluate.bits import bits_per_note  # noqa: E402
from core.evaluate.memory_bits import Trace, fit_gate, network_probs, trace_bits  # noqa: E402
from core.memory import (FOLDER_GATE, MAX_ORDER, N_FEATURES, NO_RECALL, PIECE_GATE,  # noqa: E402
                         FolderMemory, PieceMemory, Recall, _features, _ppm, context_hashes, entropy_bits,
                         gate_weight)
from core.network.checkpoint import load_checkpoint  # noqa: E402
from core.paths import base_model  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402


class Piece:
    """A test tune as the variants read it: ids, the network's distributions [n, V], the grammar's masks."""

    def __init__(self, ids, probs, masks, notes):
        self.ids, self.probs, self.masks, self.notes = ids, probs, masks, notes


def read_pieces(model, tok, seqs) -> list[Piece]:
    V = tok.vocab_size
    pitch = set(tok.ids_of_kind("pitch"))
    out = []
    for ids in seqs:
        g = tok.grammar()
        g.advance(ids[0])
        masks = np.zeros((len(ids) - 1, V), dtype=bool)
        for i in range(len(ids) - 1):
            masks[i, g.allowed()] = True
            g.advance(ids[i + 1])
        out.append(Piece(list(ids), network_probs(model, ids)[:, :V], masks, sum(t in pitch for t in ids)))
    return out


class ForgettingMemory:
    """The piece memory with per-context forgetting: a context's counts are multiplied by `keep` each time
    it recurs, before the new continuation is counted."""

    def __init__(self, first: int, keep: float):
        self.keep, self.counts, self._tail = keep, {}, [first]
        self._hashes = context_hashes(self._tail)

    def append(self, t: int) -> None:
        for _, h in self._hashes:
            row = self.counts.setdefault(h, {})
            for k in row:
                row[k] *= self.keep
            row[t] = row.get(t, 0.0) + 1.0
        self._tail = (self._tail + [t])[-MAX_ORDER:]
        self._hashes = context_hashes(self._tail)

    def recall(self) -> Recall:
        return _ppm((k, self.counts[h]) for k, h in reversed(self._hashes) if h in self.counts)


class IntervalMemory:
    """A piece memory over the tune with each pitch read as its step from the previous pitch (any other
    token as it is); what it recalls is turned back into pitches from the last one."""

    def __init__(self, tok, first: int):
        pitches = tok.ids_of_kind("pitch")
        self.first_pitch, self.n_pitch = pitches.start, len(pitches)
        self.base = tok.vocab_size + self.n_pitch  # interval ids: base + step + n_pitch
        self.prev = None
        self.memory = PieceMemory([self._read(first)])

    def _read(self, t: int) -> int:
        if not self.first_pitch <= t < self.first_pitch + self.n_pitch:
            return t
        p = t - self.first_pitch
        out = t if self.prev is None else self.base + (p - self.prev)
        self.prev = p
        return out

    def append(self, t: int) -> None:
        self.memory.append(self._read(t))

    def recall(self) -> Recall:
        r = self.memory.recall()
        if r.empty:
            return r
        tokens, mass = [], []
        for t, m in zip(r.tokens.tolist(), r.mass.tolist()):
            if t >= self.base - self.n_pitch:
                p = None if self.prev is None else self.prev + t - self.base
                if p is None or not 0 <= p < self.n_pitch:
                    continue
                t = self.first_pitch + p
            tokens.append(t)
            mass.append(m)
        if not tokens:
            return NO_RECALL
        left = float(r.mass.sum()) - sum(mass)  # what fell outside the pitch range goes back to the mixture below
        return Recall(np.array(tokens), np.array(mass), r.escape + left, r.order, r.seen, r.distinct)


def _mix(p: np.ndarray, r: Recall, gate: np.ndarray, entropy: float) -> tuple[np.ndarray, float, np.ndarray]:
    """(the mixture, its weight w, the memory's masses as a distribution) of p and one recall, as
    core.memory.MemoryMixer mixes them."""
    m = np.zeros_like(p)
    if r.empty:
        return p, 0.0, m
    w = gate_weight(gate, r, entropy)
    m[r.tokens] = r.mass
    return (1 - w + w * r.escape) * p + w * m, w, m


def score_piece(piece: Piece, folder, *, gate_lr=0.0, forgetting=None, intervals=None, tok=None, probs=None,
                orders: dict | None = None) -> tuple[float, float]:
    """(bits of the bare network, bits of the mixture) over one tune, grammar-masked both."""
    probs = piece.probs if probs is None else probs
    gate = PIECE_GATE.copy()
    first = piece.ids[0]
    memory = PieceMemory([first]) if forgetting is None else ForgettingMemory(first, forgetting)
    by_interval = IntervalMemory(tok, first) if intervals is not None else None
    net = mixed = 0.0
    for i, y in enumerate(piece.ids[1:]):
        p, allowed = probs[i], piece.masks[i]
        h = entropy_bits(p)
        net -= math.log2(p[y] / p[allowed].sum())
        below = p
        if folder is not None:
            below, _, _ = _mix(p, folder.recall(memory._hashes), FOLDER_GATE, h)
        r = memory.recall()
        q, w, m = _mix(below, r, gate, h)
        if gate_lr and w > 0:  # d(-log q(y) + log q(allowed)) / d gate, through w = sigmoid(gate . f)
            f = _features(r, h)
            e = r.escape
            d_y = ((e - 1) * below[y] + m[y]) / q[y]
            d_z = ((e - 1) * below[allowed].sum() + m[allowed].sum()) / q[allowed].sum()
            gate -= gate_lr * (d_z - d_y) * w * (1 - w) * f
        if by_interval is not None:
            q, _, _ = _mix(q, by_interval.recall(), intervals, entropy_bits(q / q.sum()))
            by_interval.append(y)
        bits = -math.log2(q[y] / q[allowed].sum())
        mixed += bits
        if orders is not None:
            row = orders.setdefault(r.order, [0, 0.0, 0.0])
            row[0] += 1
            row[1] -= math.log2(p[y] / p[allowed].sum())
            row[2] += bits
        memory.append(y)
    return net, mixed


def score(pieces, folder, **kw) -> tuple[float, float]:
    """(network, mixture) bits per note over the pieces."""
    notes = sum(p.notes for p in pieces)
    totals = np.array([score_piece(p, folder, **kw) for p in pieces]).sum(0)
    return bits_per_note(float(totals[0]), notes), bits_per_note(float(totals[1]), notes)


def interval_gate(pieces: list[Piece], tok) -> np.ndarray:
    """The interval memory's gate, fitted on validation pieces over today's mixture (no folder)."""
    cols = {k: [] for k in ("below_t", "below_z", "mem_t", "mem_z", "escape", "features")}
    for piece in pieces:
        memory, by_interval = PieceMemory([piece.ids[0]]), IntervalMemory(tok, piece.ids[0])
        for i, y in enumerate(piece.ids[1:]):
            p, allowed = piece.probs[i], piece.masks[i]
            q, _, _ = _mix(p, memory.recall(), PIECE_GATE, entropy_bits(p))
            r = by_interval.recall()
            cols["below_t"].append(q[y])
            cols["below_z"].append(q[allowed].sum())
            hit = np.flatnonzero(r.tokens == y)
            cols["mem_t"].append(float(r.mass[hit].sum()) if len(hit) else 0.0)
            cols["mem_z"].append(float(r.mass[allowed[r.tokens]].sum()) if not r.empty else 0.0)
            cols["escape"].append(r.escape)
            cols["features"].append(_features(r, entropy_bits(q / q.sum())) if not r.empty else np.zeros(N_FEATURES))
            memory.append(y)
            by_interval.append(y)
    trace = Trace(*(np.array(cols[k]) for k in ("below_t", "below_z", "mem_t", "mem_z", "escape", "features")),
                  sum(p.notes for p in pieces))
    gate = fit_gate(trace, PIECE_GATE)
    before = float(-np.log2(trace.below_t / trace.below_z).sum())
    print(f"interval gate fitted on {len(pieces)} validation pieces: {bits_per_note(before, trace.notes):.3f} -> "
          f"{bits_per_note(float(trace_bits(trace, gate)), trace.notes):.3f} bits/note", flush=True)
    return gate


def dynamic_probs(model, piece: Piece, lr: float, chunk: int) -> np.ndarray:
    """The network's distributions over a tune when it learns the tune as it reads it: each chunk is scored,
    then one Adam step on it (the state carried, detached)."""
    learner = copy.deepcopy(model)
    learner.train()
    for m in learner.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=lr)
    seq = torch.tensor(piece.ids)
    state = learner.init_state(1)
    out = np.zeros_like(piece.probs)
    V = out.shape[1]
    for b in range(0, len(seq) - 1, chunk):
        x, y = seq[b:min(b + chunk, len(seq) - 1)], seq[b + 1:min(b + chunk, len(seq) - 1) + 1]
        logits, state = learner(x[None], state=state, return_state=True)
        out[b:b + len(x)] = torch.softmax(logits[0].double(), -1)[:, :V].detach().numpy()
        loss = torch.nn.functional.cross_entropy(logits[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = state.detach()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="default: the bundled base model")
    ap.add_argument("--heldout", default="data/heldout")
    ap.add_argument("--corpus", nargs="+", default=["data/corpus"], help="folders with the pretraining collections")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--dynamic", action="store_true", help="also dynamic evaluation (slower)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.model or str(base_model()))
    model.eval()
    tok = Tokenizer.from_dict(meta["tokenizer"])
    t0 = time.perf_counter()
    validation = encode_files(tok, pop909_files("validation", 12))
    corpus = []
    for c in ("essenFolksong", "ryansMammoth", "bach"):
        for root in args.corpus:
            if found := corpus_files(Path(root), c, "validation", 12):
                validation += encode_files(tok, found)
                break
        if c != "bach":
            for root in args.corpus:
                if found := corpus_files(Path(root), c, "train", 10 ** 6):
                    corpus += encode_files(tok, found)
                    break
    gate = interval_gate(read_pieces(model, tok, validation), tok)
    corpus_memory = FolderMemory(corpus) if corpus else None
    print(f"validation and corpus read in {time.perf_counter() - t0:.0f} s ({len(corpus)} corpus pieces)", flush=True)

    tunes = sorted((Path(args.heldout) / "oneills1850").glob("*.mid"))
    rng = random.Random(3)
    rows, where = [], {}
    for draw in range(args.draws):
        pick = rng.sample(tunes, 40)
        folder = FolderMemory(encode_files(tok, pick[:10]))
        test = read_pieces(model, tok, encode_files(tok, pick[10:]))
        net, today = score(test, folder, orders=where)
        variants = {"today (piece + folder memory)": {}}
        variants.update({f"online gate, rate {lr}": {"gate_lr": lr} for lr in (0.03, 0.1, 0.3)})
        variants.update({f"forgetting, x{keep} per recurrence": {"forgetting": keep} for keep in (0.9, 0.8, 0.6)})
        variants["+ interval memory"] = {"intervals": gate, "tok": tok}
        results = {name: score(test, folder, **kw)[1] for name, kw in variants.items()}
        if corpus_memory is not None:
            results["corpus as the folder memory"] = score(test, corpus_memory)[1]
        if args.dynamic:
            for lr in (1e-4, 3e-4, 1e-3):
                dyn = [Piece(p.ids, dynamic_probs(model, p, lr, 64), p.masks, p.notes) for p in test]
                d_net, d_mix = score(dyn, folder)
                results[f"dynamic evaluation, Adam {lr:g} (network alone {d_net / net:.1%})"] = d_mix
        for name, bits in results.items():
            rows.append([draw + 1, name, f"{bits:.3f}", f"{bits / net:.1%}"])
        rows.append([draw + 1, "bare network", f"{net:.3f}", "100%"])
        print(f"draw {draw + 1} done at {time.perf_counter() - t0:.0f} s", flush=True)
    print_table(["draw", "variant", "bits/note", "of the bare network"], rows)
    total = sum(v[2] for v in where.values())
    print("\nWhere today's bits are (all draws): by the longest context of the tune so far the piece memory matched")
    print_table(["matched tokens", "tokens", "network bits", "mixture bits", "share of the mixture's bits"],
                [[o or "none", v[0], f"{v[1]:.0f}", f"{v[2]:.0f}", f"{v[2] / total:.1%}"]
                 for o, v in sorted(where.items())])


if __name__ == "__main__":
    main()

"""Bits per note with the memories (core.memory) mixed into the network, as generation mixes them.

Each piece runs through the network once (the state carried from its first token, as `rwkv-music eval`
reads files); then, token by token, the network's distribution is mixed with the piece memory (what came
before in this piece) and the folder memory, masked by the grammar, and the true next token is scored.
The bare network is scored under the same grammar mask, so the two differ by the memory alone.

`memory_trace` keeps, per scored token, what a gate needs (network and memory masses at the target and on
the allowed tokens, the features): bench/fit_memory_gate.py fits the gates on such traces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..memory import N_FEATURES, FolderMemory, MemoryMixer, PieceMemory, Recall, _features, entropy_bits
from .scoring import whole_piece_logits

POSITION_BUCKETS = (0, 512, 1024, 2048, 4096, 8192)


def network_probs(model, ids: list[int]) -> np.ndarray:
    """p(next | prefix) of the network for every prefix of ids[:-1]: [len(ids) - 1, V] (float64). `model`: a
    network or a core.network.style.StyledModel (the network with its style)."""
    return np.concatenate([torch.softmax(logits.double(), -1).cpu().numpy()
                           for _, logits, _ in whole_piece_logits(model, ids)])


@dataclass
class PieceBits:
    """Bits of each scored token (position i predicts ids[i + 1]) of one piece, and its note count."""
    network: np.ndarray
    mixed: np.ndarray
    notes: int


def piece_bits(model, tokenizer, ids: list[int], mixer: MemoryMixer, p_net: np.ndarray | None = None) -> PieceBits:
    """Bits per scored token of the bare network and of the mixture (both grammar-masked), for one piece
    scored from its first token. `mixer` is fresh (its piece memory empty); it is filled as the piece goes."""
    if p_net is None:
        p_net = network_probs(model, ids)
    V = tokenizer.vocab_size
    g = tokenizer.grammar()
    g.advance(ids[0])
    mixer.append(ids[0])
    net = np.zeros(len(ids) - 1)
    mixed = np.zeros(len(ids) - 1)
    for i in range(len(ids) - 1):
        t = ids[i + 1]
        allowed = g.allowed()
        p = p_net[i, :V]
        z = p[allowed].sum()
        net[i] = -np.log2(p[t] / z)
        q = mixer.mixed(p)
        mixed[i] = -np.log2(q[t] / q[allowed].sum())
        g.advance(t)
        mixer.append(t)
    pitch = tokenizer.ids_of_kind("pitch")
    return PieceBits(net, mixed, sum(1 for t in ids if t in pitch))


def by_position(pieces: list[PieceBits], edges=POSITION_BUCKETS) -> list[dict]:
    """Bits per token of the network and the mixture by token position from the piece's start."""
    edges = [*edges, 10 ** 9]
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        net = sum(float(p.network[lo:hi].sum()) for p in pieces)
        mixed = sum(float(p.mixed[lo:hi].sum()) for p in pieces)
        n = sum(len(p.network[lo:hi]) for p in pieces)
        if n:
            rows.append({"positions": f"{lo}-{hi - 1}" if hi < 10 ** 9 else f"{lo}-", "tokens": n,
                         "network": net / n, "memory": mixed / n, "change": mixed / net - 1})
    return rows


@dataclass
class Trace:
    """Per scored token of a set of pieces: what fitting a gate needs. Masses are of the distribution
    below the memory (the network, or the network with the folder mixed in) and of the memory's recall."""
    below_t: np.ndarray  # p_below(target)
    below_z: np.ndarray  # p_below(allowed)
    mem_t: np.ndarray  # recall mass at the target
    mem_z: np.ndarray  # recall mass on allowed tokens
    escape: np.ndarray
    features: np.ndarray  # [n, N_FEATURES]; rows of no recall are all-zero (their weight is 0)
    notes: int


def memory_trace(model, tokenizer, pieces: list[list[int]], *, which: str = "piece",
                 folder: FolderMemory | None = None, below: MemoryMixer | None = None) -> Trace:
    """The trace of the piece memory (which="piece"; `below`: a folder mixer applied under it) or of the
    folder memory (which="folder") over `pieces`."""
    V = tokenizer.vocab_size
    pitch = tokenizer.ids_of_kind("pitch")
    cols: dict[str, list] = {k: [] for k in ("below_t", "below_z", "mem_t", "mem_z", "escape", "features")}
    notes = 0
    for ids in pieces:
        p_net = network_probs(model, ids)
        notes += sum(1 for t in ids if t in pitch)
        g = tokenizer.grammar()
        g.advance(ids[0])
        memory = PieceMemory([ids[0]])
        for i in range(len(ids) - 1):
            t = ids[i + 1]
            allowed = g.allowed()
            p = p_net[i, :V]
            h = entropy_bits(p)
            if below is not None and below.folder is not None:  # the folder mixed in as the product mixes it
                p = MemoryMixer(memory, below.folder, below.strength, use_piece=False,
                                folder_gate=below.folder_gate).mixed(p)
            r: Recall = memory.recall() if which == "piece" else folder.recall(memory._hashes)
            cols["below_t"].append(p[t])
            cols["below_z"].append(p[allowed].sum())
            if r.empty:
                cols["mem_t"].append(0.0)
                cols["mem_z"].append(0.0)
                cols["escape"].append(1.0)
                cols["features"].append(np.zeros(N_FEATURES))
            else:
                hit = np.flatnonzero(r.tokens == t)
                cols["mem_t"].append(float(r.mass[hit[0]]) if len(hit) else 0.0)
                cols["mem_z"].append(float(r.mass[allowed[r.tokens]].sum()))
                cols["escape"].append(r.escape)
                cols["features"].append(_features(r, h))
            g.advance(t)
            memory.append(t)
    return Trace(*(np.array(cols[k]) for k in ("below_t", "below_z", "mem_t", "mem_z", "escape")),
                 np.array(cols["features"]), notes)


def trace_bits(trace: Trace, gate: np.ndarray | torch.Tensor, strength: float = 1.0):
    """Total bits of a trace's targets under a gate (torch in, torch out, for fitting; numpy otherwise)."""
    as_torch = isinstance(gate, torch.Tensor)
    lib = torch if as_torch else np
    f = torch.as_tensor(trace.features) if as_torch else trace.features
    arr = (lambda a: torch.as_tensor(a)) if as_torch else (lambda a: a)
    active = arr((trace.features[:, 0] > 0).astype(np.float64))
    w = strength * active / (1 + lib.exp(-(f @ gate)))
    num = (1 - w + w * arr(trace.escape)) * arr(trace.below_t) + w * arr(trace.mem_t)
    den = (1 - w + w * arr(trace.escape)) * arr(trace.below_z) + w * arr(trace.mem_z)
    return -(lib.log2(num) - lib.log2(den)).sum()


def fit_gate(trace: Trace, start: np.ndarray, steps: int = 300) -> np.ndarray:
    """Gate weights that minimise the trace's bits (Adam from `start`)."""
    gate = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([gate], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = trace_bits(trace, gate) / max(len(trace.below_t), 1)
        loss.backward()
        opt.step()
    return gate.detach().numpy()


__all__ = ["PieceBits", "Trace", "by_position", "fit_gate", "memory_trace", "network_probs", "piece_bits",
           "trace_bits"]

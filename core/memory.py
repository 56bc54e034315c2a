"""Exact memories of token streams, mixed with the network's next-token distribution at every token.

A small recurrent network keeps what is typical but cannot recall a motif exactly, and music repeats
itself. Two memories recall what was actually played:

- `PieceMemory`: the piece so far (the prompt, then every token sampled or forced), updated online;
- `FolderMemory`: the user's folder, built once from its token sequences (numpy, seconds) and frozen.

Both count, for every context of the last k tokens (k = 1..max_order), which tokens followed it. A context
is named by a 64-bit polynomial hash of its tokens and its order, the same in both memories:
h_k = sum_{j<k} (t_{i-j} + 1) * P^j + k * Q  (mod 2^64).

Their prediction is PPM-like (Cleary & Witten; method C escapes): from the longest context seen before
down to MIN_ORDER, order k gives count(x) / (n_k + d_k) of the mass that the orders above left, and keeps
d_k / (n_k + d_k) as escape (n_k: how often the context was seen, d_k: how many different tokens followed
it). What no order claims, and all of it where nothing matched, stays with the distribution below, so a
memory never rules a token out.

`MemoryMixer` mixes: p = (1 - w) p_below + w (p_mem + escape * p_below), with w = sigmoid(gate . features)
per memory and per token (features: how long and how often seen the match is, how sure the memory and
the network are). The folder memory mixes into the network first, the piece memory on top; the caller
masks the result by the grammar. The gates were fitted on validation pieces (bench/fit_memory_gate.py);
`strength` scales both weights (0: the bare network).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

MAX_ORDER = 24  # tokens of context (about 8 notes); longer matches add little beyond "it matched"
MIN_ORDER = 2  # one token of context says too little to override the network
_P = 0x9E3779B97F4A7C15  # odd 64-bit multipliers for the context hash
_Q = 0xC2B2AE3D27D4EB4F
_MASK = (1 << 64) - 1
_POW = [pow(_P, j, 1 << 64) for j in range(MAX_ORDER + 1)]
N_FEATURES = 6


def _order_salt(k: int) -> int:
    return (k * _Q) & _MASK


def context_hashes(tail: Sequence[int], max_order: int = MAX_ORDER) -> list[int]:
    """Hashes of the contexts ending at tail[-1]: entry k-1 names the last k tokens (as many as tail has)."""
    out, h = [], 0
    n = min(len(tail), max_order)
    for k in range(1, n + 1):
        h = (h + (int(tail[-k]) + 1) * _POW[k - 1]) & _MASK
        out.append(h ^ _order_salt(k))
    return out


@dataclass
class Recall:
    """What one memory says about the next token: PPM masses per token, the mass left to the distribution
    below, and the features its gate reads."""
    tokens: np.ndarray  # ids with mass
    mass: np.ndarray  # their probability mass (sums to 1 - escape)
    escape: float
    order: int  # the longest context that matched (0: none)
    seen: int  # how often that context was seen
    distinct: int  # how many different tokens followed it

    @property
    def empty(self) -> bool:
        return self.order == 0


NO_RECALL = Recall(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0, 0, 0, 0)


def _ppm(orders: list[tuple[int, np.ndarray, np.ndarray]]) -> Recall:
    """PPM blend of (order, tokens, counts), highest order first."""
    if not orders:
        return NO_RECALL
    toks, masses = [], []
    left = 1.0
    for _, t, c in orders:
        n, d = float(c.sum()), len(c)
        toks.append(t)
        masses.append(c * (left / (n + d)))
        left *= d / (n + d)
    top, t0, c0 = orders[0]
    tokens = np.concatenate(toks)
    mass = np.concatenate(masses)
    if len(orders) > 1:  # a token seen after several orders: one entry
        tokens, inverse = np.unique(tokens, return_inverse=True)
        mass = np.bincount(inverse, weights=mass)
    return Recall(tokens, mass, left, top, int(c0.sum()), len(c0))


class PieceMemory:
    """The piece so far, counted online: append() costs max_order dictionary updates (O(1) per token).

    `fork()` gives a child that sees everything this memory holds and adds its own tokens without copying
    or changing it: one per variation, over the prompt's memory."""

    def __init__(self, tokens: Iterable[int] = (), max_order: int = MAX_ORDER, *, _parent: "PieceMemory | None" = None):
        self.max_order = max_order
        self._parent = _parent
        self._counts: dict[int, dict[int, int]] = {}  # context hash -> {next token: count}
        self._tail: list[int] = list(_parent._tail) if _parent else []
        self._hashes: list[int] = list(_parent._hashes) if _parent else []
        self.length = _parent.length if _parent else 0
        self.depth = _parent.depth + 1 if _parent else 0  # forks above it: each lookup reads them all
        self.extend(tokens)

    def fork(self) -> "PieceMemory":
        return PieceMemory(max_order=self.max_order, _parent=self)

    def extend(self, tokens: Iterable[int]) -> None:
        for t in tokens:
            self.append(t)

    def append(self, t: int) -> None:
        t = int(t)
        counts = self._counts
        for h in self._hashes:  # every context ending at the previous token was followed by t
            row = counts.get(h)
            if row is None:
                counts[h] = {t: 1}
            else:
                row[t] = row.get(t, 0) + 1
        self._tail.append(t)
        if len(self._tail) > 2 * self.max_order:
            del self._tail[:-self.max_order]
        self._hashes = context_hashes(self._tail, self.max_order)
        self.length += 1

    def _row(self, h: int) -> dict[int, int] | None:
        own = self._counts.get(h)
        above = self._parent._row(h) if self._parent is not None else None
        if above is None or own is None:
            return own if above is None else above
        merged = dict(above)
        for t, c in own.items():
            merged[t] = merged.get(t, 0) + c
        return merged

    def recall(self) -> Recall:
        """The memory's view of the token after everything appended so far."""
        orders = []
        for k in range(len(self._hashes), MIN_ORDER - 1, -1):
            row = self._row(self._hashes[k - 1])
            if row:
                orders.append((k, np.fromiter(row.keys(), np.int64, len(row)),
                               np.fromiter(row.values(), np.float64, len(row))))
        return _ppm(orders)


class FolderMemory:
    """The user's folder: every context of every piece (and what followed it), in sorted numpy arrays;
    built in one vectorised pass, looked up with one searchsorted per token. Frozen once built.

    `sequences` are kept (int16 ids) so that a style file can store them and rebuild the index on load."""

    def __init__(self, sequences: Sequence[Sequence[int]], max_order: int = MAX_ORDER):
        self.max_order = max_order
        self.sequences = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) > 1]
        keys, nexts = [], []
        for seq in self.sequences:
            n = len(seq)
            h = np.zeros(n - 1, dtype=np.uint64)  # the context ending at i, for i < n - 1
            with np.errstate(over="ignore"):
                for k in range(1, min(max_order, n - 1) + 1):
                    i = np.arange(k - 1, n - 1)
                    h[k - 1:] += (seq[i - k + 1] + 1).astype(np.uint64) * np.uint64(_POW[k - 1])
                    keys.append(h[k - 1:] ^ np.uint64(_order_salt(k)))
                    nexts.append(seq[k:])
        if keys:
            key = np.concatenate(keys)
            nxt = np.concatenate(nexts)
            order = np.lexsort((nxt, key))
            key, nxt = key[order], nxt[order]
            change = np.ones(len(key), dtype=bool)
            change[1:] = (key[1:] != key[:-1]) | (nxt[1:] != nxt[:-1])
            starts = np.flatnonzero(change)
            self._pair_key = key[starts]
            self._next = nxt[starts].astype(np.int32)
            self._count = np.diff(np.append(starts, len(key))).astype(np.float64)
            first = np.ones(len(self._pair_key), dtype=bool)
            first[1:] = self._pair_key[1:] != self._pair_key[:-1]
            self._ctx_start = np.flatnonzero(first)
            self._ctx = self._pair_key[self._ctx_start]
            self._ctx_end = np.append(self._ctx_start[1:], len(self._pair_key))
        else:
            self._ctx = np.zeros(0, dtype=np.uint64)

    @property
    def pieces(self) -> int:
        return len(self.sequences)

    @property
    def tokens(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def recall(self, hashes: Sequence[int]) -> Recall:
        """The folder's view of the next token after a context whose hashes (context_hashes) are given."""
        if not len(self._ctx) or len(hashes) < MIN_ORDER:
            return NO_RECALL
        q = np.array(hashes[MIN_ORDER - 1:], dtype=np.uint64)
        idx = np.minimum(np.searchsorted(self._ctx, q), len(self._ctx) - 1)
        found = np.flatnonzero(self._ctx[idx] == q)
        orders = []
        for j in found[::-1]:
            a, b = self._ctx_start[idx[j]], self._ctx_end[idx[j]]
            orders.append((int(j) + MIN_ORDER, self._next[a:b], self._count[a:b]))
        return _ppm(orders)


def _features(r: Recall, net_entropy: float) -> np.ndarray:
    """What a gate reads: order of the match, how often and how surely it was followed, the network's and
    the memory's certainty. Scaled to about [0, 1]."""
    return np.array([1.0, r.order / MAX_ORDER, math.log1p(r.seen) / 5.0, r.seen / (r.seen + r.distinct),
                     net_entropy / 8.0, float(r.mass.max()) if len(r.mass) else 0.0])


# Fitted on validation pieces of the pretraining corpus by bench/fit_memory_gate.py (see the README).
PIECE_GATE = np.array([-4.938, 4.553, 3.559, -0.858, 2.386, 3.097])
FOLDER_GATE = np.array([-3.114, 0.621, -0.892, -0.472, 1.893, 0.244])


def gate_weight(gate: np.ndarray, r: Recall, net_entropy: float) -> float:
    if r.empty:
        return 0.0
    return float(1.0 / (1.0 + math.exp(-float(gate @ _features(r, net_entropy)))))


def mix(p_below: np.ndarray, r: Recall, w: float) -> np.ndarray:
    """(1 - w) p_below + w (memory + escape * p_below); sums to one when p_below does."""
    if w <= 0.0 or r.empty:
        return p_below
    out = p_below * (1.0 - w + w * r.escape)
    out[r.tokens] += w * r.mass
    return out


def entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


@dataclass
class MemoryMixer:
    """The memories of one stream (a batch row): its piece memory, the folder memory it may share with
    other rows, and how strongly they steer (`strength` x the fitted weights; 0 = the bare network)."""
    piece: PieceMemory  # also what names the contexts the folder memory is asked about
    folder: FolderMemory | None = None
    strength: float = 1.0
    use_piece: bool = True  # False: the folder alone (measurements)
    piece_gate: np.ndarray = field(default_factory=lambda: PIECE_GATE.copy())
    folder_gate: np.ndarray = field(default_factory=lambda: FOLDER_GATE.copy())

    @property
    def active(self) -> bool:
        return self.strength > 0 and (self.use_piece or self.folder is not None)

    def fork(self) -> "MemoryMixer":
        return MemoryMixer(self.piece.fork(), self.folder, self.strength, self.use_piece, self.piece_gate,
                           self.folder_gate)

    def append(self, t: int) -> None:
        self.piece.append(t)

    def mixed(self, p_net: np.ndarray) -> np.ndarray:
        """The next-token distribution: the network's (probabilities, [V]) with the memories mixed in."""
        if not self.active:
            return p_net
        h = entropy_bits(p_net)
        p = p_net
        if self.folder is not None:
            r = self.folder.recall(self.piece._hashes)
            p = mix(p, r, min(1.0, self.strength * gate_weight(self.folder_gate, r, h)))
        if self.use_piece:
            r = self.piece.recall()
            p = mix(p, r, min(1.0, self.strength * gate_weight(self.piece_gate, r, h)))
        return p


__all__ = ["FolderMemory", "MemoryMixer", "PieceMemory", "Recall", "context_hashes", "mix", "MAX_ORDER"]

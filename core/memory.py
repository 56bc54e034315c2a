"""Exact memories of token streams, mixed with the network's next-token distribution at every token.

A small recurrent network keeps what is typical but cannot recall a motif exactly, and music repeats
itself. Two memories recall what was actually played:

- `PieceMemory`: the piece so far (the prompt, then every token sampled or forced), updated online;
- `FolderMemory`: the user's folder, built once from its token sequences (numpy, seconds) and frozen.

Both count, for every context of the last k tokens (k in ORDERS, 2..24), which tokens followed it. A context
is named by a 64-bit polynomial hash of its tokens and its order, the same in both memories:
h_k = (sum_{j<k} (t_{i-j} + 1) * P^j mod 2^64) xor k * Q.

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
# The context lengths counted: a geometric ladder instead of every length from 2 to 24 keeps a lookup and an
# update to 8 table operations per token (the gaps cost nothing measurable: bench_memory.py fit).
ORDERS = (2, 3, 4, 6, 8, 12, 16, 24)
MIN_ORDER = ORDERS[0]  # one token of context says too little to override the network
_P = 0x9E3779B97F4A7C15  # odd 64-bit multipliers for the context hash
_Q = 0xC2B2AE3D27D4EB4F
_MASK = (1 << 64) - 1
_POW = [pow(_P, j, 1 << 64) for j in range(MAX_ORDER + 1)]
_SALT = {k: (k * _Q) & _MASK for k in ORDERS}
N_FEATURES = 6


def context_hashes(tail: Sequence[int]) -> list[tuple[int, int]]:
    """(k, hash) of the contexts ending at tail[-1], for every k of ORDERS that tail is long enough for."""
    out, h = [], 0
    n = min(len(tail), MAX_ORDER)
    for k in range(1, n + 1):
        h = (h + (int(tail[-k]) + 1) * _POW[k - 1]) & _MASK
        if k in _SALT:
            out.append((k, h ^ _SALT[k]))
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


PPM_CUTOFF = 1e-3  # orders below one that leaves less than this mass add too little to be worth a lookup


def _ppm(rows: Iterable[tuple[int, dict[int, float]]]) -> Recall:
    """PPM blend of the rows (order, {token: count}) that matched, highest order first (looked up lazily:
    once the escape left is below PPM_CUTOFF, the lower orders are not read, and it goes to the network)."""
    acc: dict[int, float] = {}
    left = 1.0
    top = None
    for k, row in rows:
        if top is None:
            top = (k, row)
        n, d = sum(row.values()), len(row)
        share = left / (n + d)
        for t, c in row.items():
            acc[t] = acc.get(t, 0.0) + c * share
        left *= d / (n + d)
        if left < PPM_CUTOFF:
            break
    if top is None:
        return NO_RECALL
    return Recall(np.fromiter(acc.keys(), np.int64, len(acc)), np.fromiter(acc.values(), np.float64, len(acc)),
                  left, top[0], int(sum(top[1].values())), len(top[1]))


class CountIndex:
    """Frozen counts of what followed every context (of ORDERS) in some token sequences: sorted numpy arrays
    built in one vectorised pass, looked up with one searchsorted per token. Contexts never span two
    sequences."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        keys, nexts = [], []
        for seq in sequences:
            seq = np.asarray(seq, dtype=np.int64)
            n = len(seq)
            if n < 2:
                continue
            h = np.zeros(n - 1, dtype=np.uint64)  # the context ending at i, for i < n - 1
            with np.errstate(over="ignore"):
                for k in range(1, min(MAX_ORDER, n - 1) + 1):
                    i = np.arange(k - 1, n - 1)
                    h[k - 1:] += (seq[i - k + 1] + 1).astype(np.uint64) * np.uint64(_POW[k - 1])
                    if k in _SALT:
                        keys.append(h[k - 1:] ^ np.uint64(_SALT[k]))
                        nexts.append(seq[k:])
        if not keys:
            self._ctx = np.zeros(0, dtype=np.uint64)
            return
        key = np.concatenate(keys)
        nxt = np.concatenate(nexts)
        order = np.lexsort((nxt, key))
        key, nxt = key[order], nxt[order]
        change = np.ones(len(key), dtype=bool)
        change[1:] = (key[1:] != key[:-1]) | (nxt[1:] != nxt[:-1])
        starts = np.flatnonzero(change)
        pair_key = key[starts]
        self._next = nxt[starts]
        self._count = np.diff(np.append(starts, len(key))).astype(np.float64)
        first = np.ones(len(pair_key), dtype=bool)
        first[1:] = pair_key[1:] != pair_key[:-1]
        self._start = np.flatnonzero(first)
        self._ctx = pair_key[self._start]
        self._end = np.append(self._start[1:], len(pair_key))

    def rows(self, hashes: list[tuple[int, int]]) -> dict[int, tuple[int, int]]:
        """{hash: (start, end)} of the contexts of `hashes` that were seen (one vectorised search); `row`
        reads one of them."""
        if not len(self._ctx) or not hashes:
            return {}
        q = np.fromiter((h for _, h in hashes), np.uint64, len(hashes))
        idx = np.minimum(np.searchsorted(self._ctx, q), len(self._ctx) - 1)
        found = np.flatnonzero(self._ctx[idx] == q).tolist()
        idx = idx.tolist()
        return {hashes[j][1]: (int(self._start[idx[j]]), int(self._end[idx[j]])) for j in found}

    def row(self, span: tuple[int, int]) -> dict[int, float]:
        a, b = span
        return dict(zip(self._next[a:b].tolist(), self._count[a:b].tolist()))


class PieceMemory:
    """The piece so far: what it was built with (a CountIndex, built at once) and what was appended since
    (hash tables, 8 updates per token: O(1)).

    `fork()` gives a child that sees everything this memory holds and adds its own tokens without copying
    or changing it: one per variation, over the prompt's memory."""

    def __init__(self, tokens: Iterable[int] = (), *, _parent: "PieceMemory | None" = None):
        self._parent = _parent
        self._counts: dict[int, dict[int, int]] = {}  # context hash -> {next token: count}
        if _parent is None:
            tokens = [int(t) for t in tokens]
            self._tail = tokens[-MAX_ORDER:]
            self._index = CountIndex([tokens]) if len(tokens) > 1 else None
            self.depth = 0
        else:
            self._tail, self._index = list(_parent._tail), None
            self.depth = _parent.depth + 1  # each lookup reads every fork above
        self._hashes = context_hashes(self._tail)

    def fork(self) -> "PieceMemory":
        return PieceMemory(_parent=self)

    def extend(self, tokens: Iterable[int]) -> None:
        for t in tokens:
            self.append(t)

    def append(self, t: int) -> None:
        t = int(t)
        counts = self._counts
        for _, h in self._hashes:  # every context ending at the previous token was followed by t
            row = counts.get(h)
            if row is None:
                counts[h] = {t: 1}
            else:
                row[t] = row.get(t, 0) + 1
        self._tail.append(t)
        if len(self._tail) > 2 * MAX_ORDER:
            del self._tail[:-MAX_ORDER]
        self._hashes = context_hashes(self._tail)

    def recall(self) -> Recall:
        """The memory's view of the token after everything appended so far."""
        chain = [self]
        while chain[-1]._parent is not None:
            chain.append(chain[-1]._parent)
        root = chain[-1]
        spans = root._index.rows(self._hashes) if root._index is not None else {}

        def row(h: int) -> dict[int, float] | None:
            out = root._index.row(spans[h]) if h in spans else None
            for memory in chain:
                own = memory._counts.get(h)
                if own:
                    if out is None:
                        out = dict(own)
                    else:
                        for t, c in own.items():
                            out[t] = out.get(t, 0) + c
            return out

        rows = ((k, row(h)) for k, h in reversed(self._hashes))
        return _ppm((k, r) for k, r in rows if r)


class FolderMemory:
    """The user's folder: a CountIndex over its pieces, frozen once built. `sequences` are kept (the token
    ids) so that a style file can store them and rebuild the index on load."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        self.sequences = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) > 1]
        self._index = CountIndex(self.sequences)

    @property
    def pieces(self) -> int:
        return len(self.sequences)

    @property
    def tokens(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def recall(self, hashes: list[tuple[int, int]]) -> Recall:
        """The folder's view of the next token after a context whose hashes (context_hashes) are given."""
        spans = self._index.rows(hashes)
        return _ppm((k, self._index.row(spans[h])) for k, h in reversed(hashes) if h in spans)


ENTROPY_FEATURE, ENTROPY_SCALE = 4, 8.0  # where the network's entropy (bits) sits among the features, and its scale


def _features(r: Recall, net_entropy: float) -> np.ndarray:
    """What a gate reads: order of the match, how often and how surely it was followed, the network's and
    the memory's certainty. Scaled to about [0, 1]."""
    return np.array([1.0, r.order / MAX_ORDER, math.log1p(r.seen) / 5.0, r.seen / (r.seen + r.distinct),
                     net_entropy / ENTROPY_SCALE, float(r.mass.max()) if len(r.mass) else 0.0])


# Fitted on validation pieces of the pretraining corpus by bench/fit_memory_gate.py (see the README).
PIECE_GATE = np.array([-4.892, 5.032, 3.532, -1.391, 2.649, 3.48])
FOLDER_GATE = np.array([-4.418, -8.737, 2.451, -4.866, 6.982, 4.994])


def gate_weight(gate: np.ndarray, r: Recall, net_entropy: float) -> float:
    if r.empty:
        return 0.0
    return float(1.0 / (1.0 + math.exp(-float(gate @ _features(r, net_entropy)))))


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

    def mixture(self, net_entropy: float) -> tuple[float, np.ndarray, np.ndarray]:
        """The mixture as (scale, tokens, extra): p = scale * p_net, plus `extra` at `tokens`. Both memories'
        mixes, the folder's then the piece's, fold into this form, so a caller never builds a whole
        distribution in Python (the sampler applies it to the logits)."""
        scale = 1.0
        extra: dict[int, float] = {}
        recalls = []
        if self.folder is not None:
            recalls.append((self.folder.recall(self.piece._hashes), self.folder_gate))
        if self.use_piece:
            recalls.append((self.piece.recall(), self.piece_gate))
        for r, gate in recalls:
            w = min(1.0, self.strength * gate_weight(gate, r, net_entropy))
            if w <= 0.0:
                continue
            keep = 1.0 - w + w * r.escape  # (1 - w) p + w (m + e p) = keep p + w m
            scale *= keep
            extra = {t: m * keep for t, m in extra.items()}
            for t, m in zip(r.tokens.tolist(), r.mass.tolist()):
                extra[t] = extra.get(t, 0.0) + w * m
        return scale, np.fromiter(extra.keys(), np.int64, len(extra)), np.fromiter(extra.values(), np.float64, len(extra))

    def mixed(self, p_net: np.ndarray) -> np.ndarray:
        """The next-token distribution: the network's (probabilities, [V]) with the memories mixed in."""
        if not self.active:
            return p_net
        scale, tokens, extra = self.mixture(entropy_bits(p_net))
        p = p_net * scale
        p[tokens] += extra
        return p


__all__ = ["CountIndex", "ENTROPY_FEATURE", "ENTROPY_SCALE", "FolderMemory", "MAX_ORDER", "MemoryMixer", "ORDERS",
           "PieceMemory", "Recall", "context_hashes"]

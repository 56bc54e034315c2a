"""An interpolated, modified Kneser-Ney n-gram model over token ids: the simplest honest baseline.

Every training sequence is left-padded with order-1 PAD ids, so the first tokens of a sequence are predicted
from a context that says "sequence start" rather than from a shorter history. Tokens are counted as
targets from index 1 on (the BOS at index 0 is given, never predicted), exactly as they are scored.

Probabilities (Chen & Goodman's modified Kneser-Ney, interpolated):

    p_k(w | h) = (max(c_k(h w) - D_k(c), 0) + gamma_k(h) * p_{k-1}(w | h')) / c_k(h)
    gamma_k(h) = D_k1 N1(h.) + D_k2 N2(h.) + D_k3 N3+(h.)

with c_n the raw counts at the highest order and, below it, continuation counts (the number of distinct
tokens seen to the left of the k-gram). An unseen context leaves p_{k-1} unchanged. The recursion starts
from the uniform distribution over the whole vocabulary, so every id gets a positive probability and
each conditional distribution sums to one.

n-grams are stored as int64 codes (base = vocab size), sorted, and looked up with np.searchsorted: a few
arrays per order, no Python dict per n-gram, so millions of tokens fit in modest memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass
class _Order:
    """Counts of one order k: sorted gram codes with their counts, and per context (the first k-1 tokens)
    the total count and how many gram types were seen once, twice, three times or more."""
    grams: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    totals: np.ndarray
    n1: np.ndarray
    n2: np.ndarray
    n3: np.ndarray
    discounts: tuple[float, float, float]


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's estimates from the count-of-counts, clamped to [0, i] so that the discounted
    mass is exactly what gamma gives back; tiny data without 1/2/3/4-counts falls back to fixed values."""
    n = [int(np.count_nonzero(counts == i)) for i in (1, 2, 3, 4)]
    if min(n) == 0:
        return 0.5, 1.0, 1.5
    y = n[0] / (n[0] + 2 * n[1])
    d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
    return tuple(float(min(max(di, 0.0), i + 1.0)) for i, di in enumerate(d))


def _order_from_counts(grams: np.ndarray, counts: np.ndarray, base: int) -> _Order:
    contexts_all = grams // base  # grams are sorted, so their contexts are sorted too
    contexts, first = np.unique(contexts_all, return_index=True)
    totals = np.add.reduceat(counts, first)
    n1 = np.add.reduceat((counts == 1).astype(np.int64), first)
    n2 = np.add.reduceat((counts == 2).astype(np.int64), first)
    n3 = np.add.reduceat((counts >= 3).astype(np.int64), first)
    return _Order(grams, counts, contexts, totals, n1, n2, n3, _discounts(counts))


def _lookup(keys: np.ndarray, sorted_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each key in a sorted code array."""
    idx = np.searchsorted(sorted_codes, keys)
    idx_clipped = np.minimum(idx, max(len(sorted_codes) - 1, 0))
    found = (idx < len(sorted_codes)) & (sorted_codes[idx_clipped] == keys) if len(sorted_codes) else \
        np.zeros(len(keys), dtype=bool)
    return idx_clipped, found


class KneserNeyNGram:
    def __init__(self, order: int, vocab_size: int, pad_id: int = 0) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        if float(vocab_size) ** order >= 2.0 ** 62:
            raise ValueError(f"order {order} over {vocab_size} ids does not fit 64-bit n-gram codes")
        self.order, self.vocab_size, self.pad_id = order, vocab_size, pad_id
        self.orders: list[_Order] = []  # index k-1 holds order k
        self.trained_tokens = 0

    # --- training ------------------------------------------------------------------------------
    def _padded(self, tokens: Sequence[int]) -> np.ndarray:
        return np.concatenate([np.full(self.order - 1, self.pad_id, dtype=np.int64),
                               np.asarray(tokens, dtype=np.int64)])

    def _codes(self, padded: np.ndarray, first_target: int, k: int) -> np.ndarray:
        """Codes of the k-grams ending at every target position >= first_target of a padded sequence."""
        ends = np.arange(first_target, len(padded))
        code = np.zeros(len(ends), dtype=np.int64)
        for offset in range(k - 1, -1, -1):
            code = code * self.vocab_size + padded[ends - offset]
        return code

    def fit(self, sequences: Iterable[Sequence[int]]) -> "KneserNeyNGram":
        """Count every sequence (each a BOS ... list of ids); targets are the ids from index 1 on."""
        chunks = []
        for seq in sequences:
            if len(seq) < 2:
                continue
            if min(seq) < 0 or max(seq) >= self.vocab_size:
                raise ValueError("token id outside the vocabulary")
            padded = self._padded(seq)
            chunks.append(self._codes(padded, self.order, self.order))  # target index 1 -> padded index order
        if not chunks:
            raise ValueError("no training sequence with at least two tokens")
        top = np.concatenate(chunks)
        self.trained_tokens = len(top)
        grams, counts = np.unique(top, return_counts=True)
        orders = [_order_from_counts(grams, counts, self.vocab_size)]
        for k in range(self.order - 1, 0, -1):
            # continuation counts: distinct left neighbours of each k-gram = (k+1)-gram types ending in it
            suffixes = orders[0].grams % (self.vocab_size ** k)
            grams, counts = np.unique(suffixes, return_counts=True)
            orders.insert(0, _order_from_counts(grams, counts, self.vocab_size))
        self.orders = orders
        return self

    # --- probabilities -------------------------------------------------------------------------
    def probs(self, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """p(target | context) for M queries: contexts [M, order-1] (PAD-filled on the left), targets [M]."""
        if not self.orders:
            raise RuntimeError("fit the model first")
        targets = np.asarray(targets, dtype=np.int64)
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(targets), self.order - 1)
        p = np.full(len(targets), 1.0 / self.vocab_size)
        for k, o in enumerate(self.orders, start=1):
            code = np.zeros(len(targets), dtype=np.int64)
            for j in range(self.order - k, self.order - 1):
                code = code * self.vocab_size + contexts[:, j]
            ci, seen_context = _lookup(code, o.contexts)
            gram = code * self.vocab_size + targets
            gi, seen_gram = _lookup(gram, o.grams)
            c = np.where(seen_gram, o.counts[gi], 0)
            d1, d2, d3 = o.discounts
            discount = np.select([c == 0, c == 1, c == 2], [0.0, d1, d2], d3)
            gamma = d1 * o.n1[ci] + d2 * o.n2[ci] + d3 * o.n3[ci]
            mixed = (np.maximum(c - discount, 0.0) + gamma * p) / np.maximum(o.totals[ci], 1)
            p = np.where(seen_context, mixed, p)
        return p

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """The whole next-token distribution [vocab_size] after `context` (its last order-1 ids count)."""
        ctx = list(context)[-(self.order - 1):] if self.order > 1 else []
        ctx = [self.pad_id] * (self.order - 1 - len(ctx)) + ctx
        ids = np.arange(self.vocab_size)
        return self.probs(np.tile(np.asarray(ctx, dtype=np.int64), (self.vocab_size, 1)), ids)

    def token_bits(self, tokens: Sequence[int], score_from: int = 1) -> np.ndarray:
        """-log2 p of tokens[i] given tokens[:i] (PAD-filled), for every i >= max(score_from, 1)."""
        padded = self._padded(tokens)
        first = max(score_from, 1)
        if first >= len(tokens):
            return np.zeros(0)
        ends = np.arange(first, len(tokens)) + self.order - 1  # positions in `padded`
        contexts = np.stack([padded[ends - self.order + 1 + j] for j in range(self.order - 1)], axis=1) \
            if self.order > 1 else np.zeros((len(ends), 0), dtype=np.int64)
        return -np.log2(self.probs(contexts, padded[ends]))

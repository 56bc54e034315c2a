"""Bits per note of any model on whole pieces, every token scored exactly once, in context windows that
every model (RWKV, Transformer, n-gram) sees identically.

How a piece of n tokens (Tokenizer.encode: BOS ... EOS) is scored with a context of ctx tokens:

1. The first window is ids[0 : ctx + 1]: the piece from its start; every token but the BOS is scored.
2. While tokens are left, let s be the first unscored index. The next window starts at a Bar b < s and is
   header_at(ids, b) + ids[b + 1 : ...] filled up to ctx + 1 tokens; only tokens from s on are scored.
   b is the earliest Bar from which that window still scores ctx // 2 new tokens (or reaches the end of
   the piece), so the first scored token sees about half a context of its own piece, and every token is
   read about twice in all; if no Bar is that close, the last Bar before s. The model always reads a
   grammatical sequence (BOS, tempo, Bar, meter in force, then the bars' own tokens).
3. Only where a single bar is longer than the context (no Bar before s leaves room to score anything),
   the window is that bar's header followed by the ctx // 2 tokens before s: it is marked `cut` and
   counted in the report.

Bits per note = the sum over test pieces of -log2 p(token | window prefix) for every scored token,
divided by the number of notes (Pitch tokens: each note has exactly one) in those pieces. A uniform guess
over the vocabulary costs log2(vocabulary size) bits per scored token (uniform_window_bits).

Infill (infill_bits): bar-infill examples cut from windows as training cuts them (core.training.data's
bar_infill_tokens: before, Gap_k, after, Fill, the k bars); only the middle after Fill is scored, once with
the bars after the gap in the context and once without them (before, Gap_k, Fill, middle).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .bits import bits_per_note, nats_to_bits

EVAL_CHUNK = 1024  # tokens per parallel forward of a whole piece; the state carries across chunks


@torch.no_grad()
def whole_piece_logits(model, ids: Sequence[int], wkv: torch.Tensor | None = None):
    """The logits after every prefix of a whole piece, read in EVAL_CHUNK-token forwards with the recurrent
    state carried from its first token (or a style's WKV state): yields (first index, logits [n,V], the
    tokens they predict [n]) chunk by chunk. `model`: a network (RWKV7) or a core.network.style.StyledModel (the
    network with its style: its offset, and its initial state unless `wkv` is given)."""
    state = model.init_state(1, wkv=wkv)
    seq = torch.tensor(list(ids), dtype=torch.long, device=state.wkv[0].device)  # where the model is
    for begin in range(0, len(seq) - 1, EVAL_CHUNK):
        chunk = seq[begin:min(begin + EVAL_CHUNK, len(seq) - 1)]
        logits, state = model(chunk[None], state=state, return_state=True)
        yield begin, logits[0], seq[begin + 1:begin + 1 + len(chunk)]


@dataclass
class ScoringWindow:
    tokens: list[int]  # what the model reads, from its BOS
    score_from: int    # tokens[i] for i >= score_from are scored (predicted from tokens[:i])
    piece: int = 0
    cut: bool = False  # no bar gave room: the window starts inside a bar (see the module doc)

    @property
    def scored(self) -> int:
        return len(self.tokens) - self.score_from


def scoring_windows(ids: Sequence[int], tokenizer, ctx_len: int, piece: int = 0) -> list[ScoringWindow]:
    """The windows that score every token of one piece once (the rule is in the module doc)."""
    ids = [int(t) for t in ids]
    n, budget = len(ids), ctx_len + 1
    if n < 2:
        return []
    windows = [ScoringWindow(ids[:budget], 1, piece)]
    scored_to = len(windows[0].tokens)
    headers = dict(tokenizer.bar_headers(ids)) if scored_to < n else {}
    bars = sorted(b for b in headers if b > 0)

    def end_from(b: int) -> int:
        return min(n, b + 1 + budget - len(headers[b]))

    while scored_to < n:
        before = [b for b in bars if b < scored_to]
        enough = [b for b in before if end_from(b) >= min(n, scored_to + ctx_len // 2)]
        b = enough[0] if enough else (before[-1] if before else None)
        if b is not None and end_from(b) > scored_to:
            header, end = headers[b], end_from(b)
            windows.append(ScoringWindow(header + ids[b + 1:end], len(header) + scored_to - (b + 1), piece))
        else:
            header = headers[b] if b is not None else [ids[0]]
            start = scored_to - ctx_len // 2
            end = min(n, start + budget - len(header))
            windows.append(ScoringWindow(header + ids[start:end], len(header) + ctx_len // 2, piece, cut=True))
        scored_to = end
    return windows


@dataclass
class PieceSet:
    """Token sequences of a set of pieces with their windows for one context length."""
    names: list[str]
    ids: list[list[int]]
    notes: list[int]
    windows: list[ScoringWindow]

    @classmethod
    def build(cls, names: Sequence[str], ids: Sequence[Sequence[int]], tokenizer, ctx_len: int) -> "PieceSet":
        pitch = tokenizer.ids_of_kind("pitch")
        seqs = [[int(t) for t in s] for s in ids]
        notes = [sum(1 for t in s if t in pitch) for s in seqs]
        windows = [w for i, s in enumerate(seqs) for w in scoring_windows(s, tokenizer, ctx_len, i)]
        return cls(list(names), seqs, notes, windows)

    @property
    def total_notes(self) -> int:
        return sum(self.notes)

    @property
    def scored_tokens(self) -> int:
        return sum(w.scored for w in self.windows)

    @property
    def cut_windows(self) -> int:
        return sum(w.cut for w in self.windows)

    def by_group(self, window_bits: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
        """Bits per note of each group of pieces (labels[i]: the group of piece i)."""
        bits: dict[str, float] = {}
        notes: dict[str, int] = {}
        for w, b in zip(self.windows, window_bits):
            bits[labels[w.piece]] = bits.get(labels[w.piece], 0.0) + float(b)
        for label, n in zip(labels, self.notes):
            notes[label] = notes.get(label, 0) + n
        return {label: bits_per_note(bits.get(label, 0.0), notes[label]) for label in sorted(notes)}

    def summary(self, window_bits: np.ndarray) -> dict:
        """Bits per note and per token from the bits of each window."""
        total = float(np.sum(window_bits))
        return {"bits_per_note": bits_per_note(total, self.total_notes),
                "bits_per_token": total / max(self.scored_tokens, 1),
                "pieces": len(self.ids), "notes": self.total_notes, "tokens": self.scored_tokens,
                "windows": len(self.windows), "cut_windows": self.cut_windows}


@torch.no_grad()
def torch_window_bits(logits_fn: Callable[[torch.Tensor], torch.Tensor], windows: Sequence[ScoringWindow],
                      pad_id: int, batch_size: int = 8, device: str | torch.device = "cpu") -> np.ndarray:
    """Bits of the scored tokens of each window under a causal model: logits_fn(idx [B,T]) -> [B,T,V].
    Windows of similar length are batched together and right-padded (a causal model's logits up to a
    sequence's last real token do not depend on the padding)."""
    out = np.zeros(len(windows))
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].tokens))
    for k in range(0, len(order), batch_size):
        group = order[k:k + batch_size]
        T = max(len(windows[i].tokens) for i in group) - 1
        inputs = torch.full((len(group), T), pad_id, dtype=torch.long)
        targets = torch.full((len(group), T), pad_id, dtype=torch.long)
        mask = torch.zeros(len(group), T)
        for row, i in enumerate(group):
            w = windows[i]
            seq = torch.tensor(w.tokens, dtype=torch.long)
            inputs[row, :len(seq) - 1] = seq[:-1]
            targets[row, :len(seq) - 1] = seq[1:]
            mask[row, w.score_from - 1:len(seq) - 1] = 1.0  # target j predicts tokens[j + 1]
        logits = logits_fn(inputs.to(device)).float()
        nll = F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), reduction="none")
        bits = nats_to_bits((nll.view(len(group), T).cpu() * mask).sum(dim=1))
        out[group] = bits.double().numpy()
    return out


def ngram_window_bits(model, windows: Sequence[ScoringWindow]) -> np.ndarray:
    """Bits of the scored tokens of each window under a KneserNeyNGram (its context: the window's tokens)."""
    return np.array([float(model.token_bits(w.tokens, w.score_from).sum()) for w in windows])


def uniform_window_bits(windows: Sequence[ScoringWindow], vocab_size: int) -> np.ndarray:
    """Bits of each window's scored tokens under a uniform guess over the vocabulary."""
    return np.array([w.scored * math.log2(vocab_size) for w in windows], dtype=float)


@torch.no_grad()
def infill_bits(logits_fn: Callable[[torch.Tensor], torch.Tensor], pieces, tokenizer, ctx_len: int,
                examples: int = 40, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Bits per note of the missing bars of bar-infill examples (pieces: core.training.data.Piece): with the bars
    after the gap in the context ("before_and_after") and with the bars before it only ("before_only"),
    the same middle tokens scored both ways; "middle_notes" and "examples" say how much was scored."""
    from .. import infill_layout
    from ..training import data as D
    rng = random.Random(seed)
    totals = {"before_and_after": 0.0, "before_only": 0.0}
    notes = done = 0
    pitch = set(tokenizer.ids_of_kind("pitch"))
    windows = D.make_windows(pieces, tokenizer, ctx_len)
    rng.shuffle(windows)
    for w in windows[:examples]:
        seq = D.bar_infill_tokens(D.window_tokens(pieces, w)[0], tokenizer, rng, ctx_len + 1)
        if seq is None:
            continue
        fill = seq.index(tokenizer.fill_id)
        gap = next(i for i, t in enumerate(seq) if tokenizer.kind(t) == "gap")
        variants = {"before_and_after": seq, "before_only": seq[:gap + 1] + seq[fill:]}
        for name, ids in variants.items():
            start = infill_layout.middle_start(tokenizer, ids)  # the first scored token: the middle's header
            x = torch.tensor(ids[:-1], device=device)[None]
            logp = torch.log_softmax(logits_fn(x)[0].float(), -1)
            y = torch.tensor(ids[1:], device=device)
            nll = -logp[torch.arange(len(y), device=device), y][start - 1:]
            totals[name] += nats_to_bits(float(nll.sum()))
        notes += sum(1 for t in seq[fill:] if t in pitch)
        done += 1
    return {k: bits_per_note(v, notes) for k, v in totals.items()} | {"middle_notes": notes, "examples": done}


POSITION_EDGES = (0, 16, 64, 256, 1024)


@torch.no_grad()
def position_profile(model, wkv: torch.Tensor, pieces: list[list[int]]) -> list[dict]:
    """Bits per token of an RWKV `model` from the zero state and from the style state `wkv`, by token
    position from each piece's start (buckets POSITION_EDGES, the last one open)."""
    device = model.emb.weight.device
    edges = [*POSITION_EDGES, 10 ** 9]
    sums = {"base": np.zeros(len(edges) - 1), "style": np.zeros(len(edges) - 1)}
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for ids in pieces:
        idx = torch.tensor(ids, device=device)[None]
        for name, start in (("base", None), ("style", wkv)):
            logits = model(idx[:, :-1], state=model.init_state(1, wkv=start))
            bits = nats_to_bits(F.cross_entropy(logits[0].float(), idx[0, 1:], reduction="none")).cpu()
            for b, (lo, hi) in enumerate(zip(edges, edges[1:])):
                sums[name][b] += float(bits[lo:hi].sum())
                if name == "base":
                    counts[b] += bits[lo:hi].numel()
    rows = []
    for b, (lo, hi) in enumerate(zip(edges, edges[1:])):
        if counts[b]:
            label = f"{lo}-{hi - 1}" if hi < 10 ** 9 else f"{lo}-"
            rows.append({"positions": label, "tokens": int(counts[b]), "base": sums["base"][b] / counts[b],
                         "style": sums["style"][b] / counts[b], "reduction": 1 - sums["style"][b] / sums["base"][b]})
    return rows

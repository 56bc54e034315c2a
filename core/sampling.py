"""The one sampling loop behind every note the model writes: continuation, infill, a new part, jam.

Each batch row is a `Lane`: a stream with its own grammar (in its decoder), its own stopping rule, maybe
tokens it must take (infill's kept notes), and its memories (core.memory). Per step, for every live row:
the token it is forced to, or one sampled from the network's distribution mixed with its memories, masked
by what it allows, its onset moved onto the piece's grid (GrammarState.snapped); the lane takes the token
(notes come out as they complete) and says whether it goes on; then one batched recurrent step for the rows
that go on.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch

from .memory import MemoryMixer
from .network.model import State
from .sampling_config import SamplingConfig
from .tokenizer.decoder import StreamDecoder


def sample_tokens(logits: torch.Tensor, allowed: torch.Tensor, cfg: SamplingConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """One token per row of logits [B,V], only among `allowed` [B,V] (bool), after temperature, top-k, top-p."""
    logits = logits.float().masked_fill(~allowed, float("-inf"))
    if cfg.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / cfg.temperature
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if cfg.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > cfg.top_p  # the first always stays
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@contextmanager
def torch_threads(n: int | None):
    """Run torch ops on n intra-op threads for a while (None: leave as is). One-token steps are too small
    to gain from threads, and threads that spin-wait on a busy machine (a fine-tuning job beside us)
    make each step tens of times slower (measured: 4 ms -> 160 ms per step)."""
    previous = torch.get_num_threads()
    if n is None or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def new_seed(cfg: SamplingConfig) -> int:
    return cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1


def with_memories(logits: torch.Tensor, memories: Sequence[MemoryMixer | None]) -> torch.Tensor:
    """Logits [B,V] with each row's memories mixed into its distribution (log of the mixture; rows without
    an active memory are returned as they are). The mixture is scale * p + extra at a few tokens
    (MemoryMixer.mixture): a shift of the whole row and a handful of exact values."""
    if not any(m is not None and m.active for m in memories):
        return logits
    # numpy on the CPU: a step's few small operations cost far less there than as torch calls
    logp = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
    out = logits.float().cpu().numpy().copy()
    for row, memory in enumerate(memories):
        if memory is None or not memory.active:
            continue
        lp = logp[row]
        p = np.exp(lp)
        entropy = float(-(p[p > 0] * lp[p > 0]).sum()) / math.log(2)
        scale, tokens, extra = memory.mixture(entropy)
        with np.errstate(divide="ignore"):
            mixed = lp + math.log(scale) if scale > 0 else np.full_like(lp, -np.inf)
            mixed[tokens] = np.log(scale * p[tokens] + extra)
        out[row] = mixed
    return torch.from_numpy(out).to(logits.device)


class Lane:
    """One batch row's stream. Subclasses say what it may sample and what it does with a token; its decoder's
    grammar (core.tokenizer) says what the stream may hold and puts sampled onsets on the piece's grid."""
    memory: MemoryMixer | None = None
    decoder: StreamDecoder

    def forced(self) -> int | None:
        """A token this lane must take now (infill's kept notes), or None to sample."""
        return None

    def allowed(self) -> np.ndarray:
        """Bool mask [vocab] of the tokens it may sample now."""
        raise NotImplementedError

    def take(self, t: int, forced: bool) -> tuple[list, str]:
        """Take token t: (what it yields now, why it stops: "" to go on)."""
        raise NotImplementedError


class StepCounter:
    """Time and count of the batched steps of a stream (read by benchmarks and the app's status); each
    stream's own once it has stepped."""
    steps = 0
    step_seconds = 0.0


def run_lanes(gen, lanes: Sequence[Lane], logits: torch.Tensor, state: State, cfg: SamplingConfig,
              rng: torch.Generator, counter: StepCounter) -> Iterator:
    """Sample every lane to its end: logits [B,V] and state hold one row per lane (after their prompts).
    Yields what the lanes yield, in sampling order."""
    alive = list(range(len(lanes)))
    vocab = gen.tokenizer.vocab_size
    while alive:
        forced = [lanes[v].forced() for v in alive]
        allowed = torch.zeros(len(alive), logits.shape[-1], dtype=torch.bool)
        for row, v in enumerate(alive):
            if forced[row] is not None:
                allowed[row, forced[row]] = True
            else:
                allowed[row, :vocab] = torch.from_numpy(lanes[v].allowed())
        if all(f is not None for f in forced):
            toks = forced
        else:
            mixed = with_memories(logits, [None if f is not None else lanes[v].memory
                                           for v, f in zip(alive, forced)])
            with torch_threads(gen.threads):
                sampled = sample_tokens(mixed, allowed.to(logits.device), cfg, rng).tolist()
            toks = [f if f is not None else lanes[v].decoder.grammar.snapped(s)
                    for v, f, s in zip(alive, forced, sampled)]
        rows = []
        for row, (v, t) in enumerate(zip(alive, toks)):
            lane = lanes[v]
            out, stop = lane.take(t, forced[row] is not None)
            yield from out
            if lane.memory is not None:
                lane.memory.append(t)
            if not stop:
                rows.append(row)
        if not rows:
            break
        alive = [alive[r] for r in rows]
        if len(rows) < len(toks):
            state = state.select(rows)
        t1 = time.perf_counter()
        with torch_threads(gen.threads):
            ids = torch.tensor([toks[r] for r in rows], device=logits.device)
            logits, state = gen.styled.step(ids, state)  # the network with the generator's style
        counter.step_seconds += time.perf_counter() - t1
        counter.steps += 1


__all__ = ["Lane", "StepCounter", "new_seed", "run_lanes", "sample_tokens", "torch_threads", "with_memories"]

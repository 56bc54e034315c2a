"""Training with the piece memory in the loop (`--memory-loss`): the loss is the NLL of the mixture the product
samples from (core.memory.MemoryMixer: the network's distribution and the piece memory's, with the fitted
PIECE_GATE), so the gradient asks the network only for what the memory of the window so far does not give.

What the memory says about each target depends on the tokens alone, so it is read once per example
(`memory_columns`); the gate's one network feature, its entropy, is read from the logits in the loss, as the
sampler reads it (detached: the gate is fixed, the network is what learns). Training has no grammar mask, so
neither has this mixture; a window's memory starts empty (it is the model's whole view of its piece).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.memory import ENTROPY_FEATURE, ENTROPY_SCALE, N_FEATURES, PIECE_GATE, PieceMemory, _features

N_COLUMNS = 2 + N_FEATURES  # mass at the target, escape, then the gate's features (the entropy's filled in the loss)


def memory_columns(inputs: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """[len(inputs), N_COLUMNS] for one example: at each position i < n, what the piece memory of inputs[:i + 1]
    says of targets[i]. Positions without a match (and padding) have escape 1 and no weight (features 0)."""
    out = np.zeros((len(inputs), N_COLUMNS))
    out[:, 1] = 1.0
    memory = PieceMemory()
    for i in range(n):
        memory.append(int(inputs[i]))
        r = memory.recall()
        if r.empty:
            continue
        hit = np.flatnonzero(r.tokens == targets[i])
        out[i, 0] = float(r.mass[hit[0]]) if len(hit) else 0.0
        out[i, 1] = r.escape
        out[i, 2:] = _features(r, 0.0)
    return out


def batch_memory_columns(inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, N_COLUMNS] of a collated batch (core.training.data.collate), up to each row's last scored target."""
    rows = []
    for b in range(inputs.shape[0]):
        scored = mask[b].nonzero()
        n = int(scored.max()) + 1 if len(scored) else 0
        rows.append(memory_columns(inputs[b].numpy(), targets[b].numpy(), n))
    return torch.as_tensor(np.stack(rows))


def mixture_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """The summed masked NLL of p = keep * p_net + w * m at the targets (MemoryMixer's rule)."""
    logp = torch.log_softmax(logits.float(), -1)
    logp_t = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy_bits = -(logp.exp() * logp).sum(-1).detach() / math.log(2)
    columns = columns.to(logp.device, logp.dtype)
    mem_t, escape, features = columns[..., 0], columns[..., 1], columns[..., 2:].clone()
    matched = features[..., 0] > 0  # the constant feature is 1 where the memory matched, 0 elsewhere
    features[..., ENTROPY_FEATURE] = entropy_bits / ENTROPY_SCALE
    w = torch.sigmoid(features @ torch.as_tensor(PIECE_GATE, dtype=logp.dtype, device=logp.device)) * matched
    keep = 1 - w + w * escape
    # log(keep * p_net + w * m) without leaving log space for p_net (a confident miss stays finite)
    mixed = torch.logaddexp(torch.log(keep) + logp_t, torch.log((w * mem_t).clamp_min(1e-30)))
    return -(mixed * mask).sum()


__all__ = ["N_COLUMNS", "batch_memory_columns", "memory_columns", "mixture_nll"]

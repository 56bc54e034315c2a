"""The loss a training run learns from and the numbers its validation reports.

Both are the summed next-token NLL (of the network, or with --memory-loss of its mixture with the piece
memory: core/training/memory_loss.py) over the scored targets of a batch (core.training.data.build_example's mask): in one
pass (`batch_nll`), or in spans of --bptt tokens with the recurrent state carried from span to span
(`span_nll`), which also backpropagates span by span. `validation_loss` sums it over the validation windows:
nats per scored token and bits per note (a note's one pitch token). `StepLosses` sums the training loss
between two progress reports.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.training import data as D
from core.training.memory_loss import mixture_nll
from core.evaluate.bits import bits_per_note, nats_to_bits
from core.training.train_config import TrainConfig


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)  # bf16 needs no GradScaler
    return torch.autocast("cpu", enabled=False)


def note_token_table(tokenizer) -> np.ndarray:
    """Bool per token id: True for the one token every note has exactly once (its pitch)."""
    is_note = np.zeros(tokenizer.vocab_size, dtype=bool)
    is_note[list(tokenizer.ids_of_kind("pitch"))] = True
    return is_note


def masked_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
               memory: torch.Tensor | None = None) -> torch.Tensor:
    """The summed NLL of the scored targets: of the network, or with `memory` (memory_loss.batch_memory_columns
    of these positions) of the network mixed with the piece memory."""
    if memory is not None:
        return mixture_nll(logits, targets, mask, memory)
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum()


def batch_nll(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
              memory: torch.Tensor | None = None) -> torch.Tensor:
    """The summed masked NLL of a batch in one pass."""
    with autocast(inputs.device):
        logits = module(inputs)
    return masked_nll(logits, targets, mask, memory)


def span_nll(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, span: int,
             backward_scale: float | None = None, memory: torch.Tensor | None = None) -> torch.Tensor:
    """The summed masked NLL of a batch run in spans of `span` tokens, the recurrent state carried from
    each span to the next: the logits are those of one pass over the whole window. With
    `backward_scale`, each span's loss (times it) is backpropagated at once and the state detached
    after it (truncated BPTT), so memory holds one span, not the window. A row leaves the batch after
    its last scored target, so a short piece beside a long one costs no padded spans."""
    T = inputs.shape[1]
    scored = mask > 0
    ends = torch.where(scored.any(1), T - scored.flip(1).int().argmax(1), 0)  # one past the last target
    rows = torch.arange(inputs.shape[0], device=inputs.device)
    total, state = torch.zeros((), device=inputs.device), None
    for start in range(0, T, span):
        keep = ends[rows] > start
        if not bool(keep.all()):
            if state is not None:
                state = state.select(keep.nonzero().flatten())
            rows = rows[keep]
        if len(rows) == 0:
            break
        stop = min(T, start + span)
        with autocast(inputs.device):
            logits, state = model(inputs[rows, start:stop], state, return_state=True)
        part = masked_nll(logits, targets[rows, start:stop], mask[rows, start:stop],
                          None if memory is None else memory[rows, start:stop])
        if backward_scale is not None:
            (part * backward_scale).backward()
            state = state.detach()
        total = total + part.detach()
    return total


@torch.no_grad()
def validation_loss(module: nn.Module, pieces: Sequence[D.Piece], windows: Sequence[D.Window], config: TrainConfig,
                    tokenizer, device: torch.device, rank: int = 0, world: int = 1) -> dict:
    """Validation loss (nats per token) and bits per note over the validation `windows` of `pieces`: at most
    max_eval_batches batches of them, this rank's share summed over the ranks."""
    was_training = module.training
    module.eval()
    is_note = note_token_table(tokenizer)
    windows = windows[: config.max_eval_batches * config.batch_size]
    # by length, so that each batch pads to little more than its windows (the sums do not care)
    windows = sorted(windows[rank::world], key=lambda w: w.n_tokens)
    totals = torch.zeros(3, dtype=torch.float64)  # nll nats, tokens, notes
    for i in range(0, len(windows), config.batch_size):
        exs = []
        for w in windows[i:i + config.batch_size]:
            tokens, head = D.window_tokens(pieces, w)
            exs.append(D.build_example(tokens, config.ctx_len, head if config.completion_only else 0, tokenizer.pad_id))
        inputs, targets, mask = D.collate(exs, tokenizer.pad_id)
        notes = float((is_note[targets.numpy()] * mask.numpy()).sum())
        if config.bptt is not None:  # a long window in spans, the state carried: the same sums, less memory
            nll_sum = float(span_nll(module.model, inputs.to(device), targets.to(device), mask.to(device),
                                     config.bptt))
        else:
            nll_sum = float(batch_nll(module, inputs.to(device), targets.to(device), mask.to(device)))
        totals += torch.tensor([nll_sum, float(mask.sum()), notes], dtype=torch.float64)
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(totals)
    module.train(was_training)
    nll, n_tok, n_notes = totals.tolist()
    return {"val_loss": nll / max(n_tok, 1.0), "bits_per_note": bits_per_note(nats_to_bits(nll), n_notes)}


class StepLosses:
    """The training loss summed on the device between two "step" events: read with one host sync there,
    so that a GPU step never waits for the host."""

    def __init__(self, device: torch.device) -> None:
        self.loss, self.bad = torch.zeros((), device=device), torch.zeros((), device=device)
        self.steps, self.tokens, self.since = 0, 0, time.monotonic()

    def add(self, loss_sum: torch.Tensor, tokens: float, found_inf: torch.Tensor) -> None:
        """A step's summed loss over its `tokens` scored targets; a skipped step (found_inf) adds no loss."""
        self.bad += found_inf
        self.loss += torch.where(found_inf > 0, torch.zeros_like(loss_sum), loss_sum.detach() / tokens)
        self.steps += 1
        self.tokens += int(tokens)

    def restart(self, now: float) -> None:
        self.loss.zero_()
        self.bad.zero_()
        self.steps, self.tokens, self.since = 0, 0, now

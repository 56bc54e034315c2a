"""Which weights a training run validates and hands back, besides the ones it is training: the running mean of
the trained parameters (`RunningAverage`, --average-from), the best validation point so far (`KeepBest`,
on unless --keep-last), and `swapped_in`, which lends either to the module for a while. Both keep their state
as the plain dicts resume.pt stores (`state()`), and start again from them.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn


def _trained(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


@contextmanager
def swapped_in(module: nn.Module, values: dict[str, torch.Tensor] | None):
    """The module's parameters replaced by `values` for a while, the current ones put back exactly."""
    if not values:
        yield
        return
    params = dict(module.named_parameters())
    current = {n: params[n].detach().clone() for n in values}
    with torch.no_grad():
        for n, t in values.items():
            params[n].copy_(t)
    try:
        yield
    finally:
        with torch.no_grad():
            for n, t in current.items():
                params[n].copy_(t)


class RunningAverage:
    """The running mean of the trained parameters over every step from `start_share` x the run's steps on: it
    sits nearer the middle of the low-loss region the last steps wander in than any one of them."""

    def __init__(self, start_share: float | None, saved: dict | None = None) -> None:
        self.start_share = start_share
        # kept from a resumed run even when this one no longer averages: validation goes on scoring it
        self.count: int = saved["n"] if saved else 0
        self.params: dict[str, torch.Tensor] | None = saved["params"] if saved else None

    def update(self, module: nn.Module, step: int, total: int) -> None:
        """Count the parameters after `step` (of `total`) in, once the averaging has started."""
        if self.start_share is None or step < max(1, math.ceil(self.start_share * total)):
            return
        with torch.no_grad():
            current = _trained(module)
            if self.params is None:
                self.count, self.params = 1, {n: p.detach().clone() for n, p in current.items()}
                return
            self.count += 1
            for n, mean in self.params.items():
                mean.add_(current[n].detach() - mean, alpha=1.0 / self.count)

    def state(self) -> dict | None:
        return None if self.params is None else {"n": self.count, "params": self.params}


class KeepBest:
    """A copy (on the CPU) of the trained parameters at the lowest validation loss so far: a small folder
    over-fits within minutes, and the result file then holds its best point, not the last. `point` is
    {"step", "val" (the validation numbers), "params"} or None."""

    def __init__(self, enabled: bool, saved: dict | None = None) -> None:
        self.enabled = enabled
        # a run resumed with --keep-last exports its current weights, not a best point it kept before
        self.point: dict | None = saved if enabled else None

    @property
    def step(self) -> int | None:
        return self.point["step"] if self.point else None

    def offer(self, module: nn.Module, step: int, val: dict, keep_params: bool = True) -> None:
        """Keep the module's trained parameters if `val`'s loss is the lowest yet. `keep_params` False (the
        ranks that write no result) keeps the point without the parameters."""
        loss = val.get("val_loss")
        if not self.enabled or loss is None or not math.isfinite(loss):
            return
        if self.point is None or loss < self.point["val"]["val_loss"]:
            params = {n: p.detach().to("cpu", copy=True) for n, p in _trained(module).items() if keep_params}
            self.point = {"step": step, "val": dict(val), "params": params}

    def state(self) -> dict | None:
        return self.point

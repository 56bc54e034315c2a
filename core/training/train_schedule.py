"""How long a training run is and how its learning rate moves: the warm-up + cosine schedule (`lr_at`), the run's
length, where it pauses and its warm-up (`Schedule`), how often it validates (`eval_interval`), and the time
budget's fit of the length to the speed of the first steps (`BudgetFit`). No model and no data here: the loop
(core/training/train.py) asks these for numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.training.train_config import TrainConfig

# steps at which a time budget (re)sets the run's length; the late one because the first hundred steps ran
# slower than the rest (600 s style runs ended after 554 s)
BUDGET_FIT_STEPS = (3, 10, 30, 100, 300)
UNFITTED_STEPS = 10**9  # a time-budget run's length until its first steps are timed


def lr_at(step: int, total: int, warmup: int, peak: float, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine down to peak * min_ratio at `total`. `step` counts from 0."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def default_warmup(total: int) -> int:
    return min(100, total // 20)


def eval_interval(config: TrainConfig, total: int, steps_per_epoch: int) -> int:
    """Steps between validation passes: --eval-every, else about eight a run, 10 to 100 steps apart, and
    at least twice an epoch (a folder of 20 pieces is a few steps an epoch, and over-fits within a few)."""
    if config.eval_every:
        return config.eval_every
    return max(1, min(100, max(10, total // 8), steps_per_epoch // 2))


@dataclass
class Schedule:
    """A run's length in steps (`total`: the cosine decay ends there), the step it pauses at (`stop_at`,
    --stop-at) and its warm-up steps."""
    total: int
    stop_at: int
    warmup: int

    @classmethod
    def plan(cls, config: TrainConfig, steps_per_epoch: int, resumed_total: int | None = None) -> "Schedule":
        """--steps, else a resumed run's own length (a bare --resume keeps its schedule), else --epochs (one
        by default); a time budget without --epochs starts UNFITTED (BudgetFit sets the length)."""
        if config.steps is not None:
            total = int(config.steps)
        elif resumed_total is not None and config.epochs is None:
            total = int(resumed_total)
        else:
            total = max(1, math.ceil((config.epochs if config.epochs is not None else 1.0) * steps_per_epoch))
            if config.time_budget_s and config.epochs is None:
                total = UNFITTED_STEPS
        schedule = cls(total, total, 0)
        schedule.set_length(total, config)
        return schedule

    @property
    def unfitted(self) -> bool:
        """A budget run paused before its first steps were timed: it has no length yet."""
        return self.total >= UNFITTED_STEPS

    def set_length(self, total: int, config: TrainConfig) -> None:
        self.total = self.stop_at = total
        if config.stop_at_step is not None:
            self.stop_at = min(total, config.stop_at_step)
        self.warmup = config.warmup_steps if config.warmup_steps is not None else default_warmup(total)

    def lr(self, step: int, peak: float, min_ratio: float) -> float:
        return lr_at(step, self.total, self.warmup, peak, min_ratio)


class BudgetFit:
    """A time budget (--time-budget) turned into a number of steps: the length is set from the time the steps
    after the first took (the first also warms up; validation is timed apart and then counted in at its own
    rate), at a few steps (BUDGET_FIT_STEPS), so that the whole schedule (warm-up, cosine decay) fits the
    wall-clock budget. A run that still overshoots by 5% (a machine that got busier) ends there."""

    def __init__(self, config: TrainConfig, started: float, first_step: int, validation_windows: int,
                 steps_per_epoch: int) -> None:
        self.config, self.started, self.first_step = config, started, first_step
        self.validation_windows, self.steps_per_epoch = validation_windows, steps_per_epoch
        self.validation_s = 0.0  # seconds spent validating (the loop adds them): not the steps' own time
        self._after_first: tuple[float, float] | None = None  # (time, validation_s) when the first step ended

    def after_step(self, schedule: Schedule, step: int, now: float) -> str | None:
        """Refit `schedule` after `step`; returns what to tell the user when the length was set."""
        cfg, budget_s = self.config, self.config.time_budget_s
        done, elapsed = step - self.first_step, now - self.started
        if done == 1:
            self._after_first = (now, self.validation_s)
        if elapsed > 1.05 * budget_s:
            schedule.total = schedule.stop_at = step
            return None
        if done not in BUDGET_FIT_STEPS:
            return None
        t_first, validation_at_first = self._after_first
        per_step = (now - t_first - (self.validation_s - validation_at_first)) / (done - 1)
        if self.validation_windows:
            every = eval_interval(cfg, int((budget_s - elapsed) / per_step) + step, self.steps_per_epoch)
            per_step *= 1 + min(cfg.max_eval_batches * cfg.batch_size, self.validation_windows) / (
                3 * cfg.batch_size * every)  # a forward is ~1/3 of a step
        steps = max(step + 1, step + int((budget_s - elapsed) / per_step))
        if cfg.steps is not None:
            steps = min(steps, int(cfg.steps))
        schedule.set_length(steps, cfg)
        return f"{per_step:.2f} s per step: {steps} steps fit the time budget"

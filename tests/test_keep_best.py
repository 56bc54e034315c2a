"""A training run's result is its best validation point (TrainConfig.keep_best), not merely its last step: a
small folder over-fits within minutes. The real model on a real MIDI folder; the best point survives a resume."""
from __future__ import annotations

from dataclasses import replace

import torch

from core.network.checkpoint import read_checkpoint_meta
from core.network.style import load_style
from core.training.train import run_training
from tests.small_models import style_config as _config

STEPS = 7  # at a constant rate of 2e-2 the validation loss of this set-up is lowest at step 4


def _run(folder, base, out, **kw):
    events = []
    # keep-best alone: no augmentation, no averaging (1: from the last step, the last weights themselves)
    config = replace(_config(folder, base, out, **{"key_augment": 0.0, "crop_share": 0.0, "average_from": 1.0, **kw}),
                     steps=STEPS, eval_every=1, lr=0.02, min_lr_ratio=1.0)
    run_training(config, events.append)
    return events


def _tensors(path) -> dict[str, torch.Tensor]:
    style = load_style(str(path))
    return {"state": style.state, "offset": style.offset_matrix(), **dict(style.weight_deltas())}


def test_the_result_is_the_lowest_validation_loss_and_a_resume_keeps_it(style_base, tmp_path):
    folder, base = style_base
    events = _run(folder, base, tmp_path / "straight")
    val = {e.step: e.val_loss for e in events if e.kind == "eval"}
    assert sorted(val) == list(range(0, STEPS + 1))  # the starting point is validated too
    best_step = min(val, key=val.get)
    assert best_step < STEPS, "the set-up must have its best point before the end for the test to mean anything"
    meta = read_checkpoint_meta(str(tmp_path / "straight" / "style.pth"))
    assert (meta["step"], meta["last_step"]) == (best_step, STEPS)
    assert meta["val_loss"] == val[best_step]
    assert f"step {best_step}" in events[-1].message

    # the same run paused at the best step, keeping its last weights: the very same style
    _run(folder, base, tmp_path / "to_best", stop_at_step=best_step, keep_best=False)
    kept, at_best = _tensors(tmp_path / "straight" / "style.pth"), _tensors(tmp_path / "to_best" / "style.pth")
    assert kept.keys() == at_best.keys() and all(torch.equal(kept[k], at_best[k]) for k in kept)

    # paused after the best step and resumed: the best point is in resume.pt, so the result is the same
    _run(folder, base, tmp_path / "resumed", stop_at_step=min(STEPS - 1, best_step + 1))
    _run(folder, base, tmp_path / "resumed", resume=True)
    resumed = _tensors(tmp_path / "resumed" / "style.pth")
    assert all(torch.equal(kept[k], resumed[k]) for k in kept)

    # --keep-last: the last step's weights, as before
    last = _run(folder, base, tmp_path / "last", keep_best=False)
    assert read_checkpoint_meta(str(tmp_path / "last" / "style.pth"))["step"] == STEPS
    assert "lowest validation loss" not in last[-1].message

    # paused after the best step and resumed with --keep-last: the last weights, not the best point kept before
    _run(folder, base, tmp_path / "resumed_last", stop_at_step=min(STEPS - 1, best_step + 1))
    _run(folder, base, tmp_path / "resumed_last", resume=True, keep_best=False)
    assert read_checkpoint_meta(str(tmp_path / "resumed_last" / "style.pth"))["step"] == STEPS
    resumed_last = _tensors(tmp_path / "resumed_last" / "style.pth")
    assert all(torch.equal(resumed_last[k], v) for k, v in _tensors(tmp_path / "last" / "style.pth").items())


def test_a_run_that_never_beats_its_start_gives_back_the_start(style_base, tmp_path):
    """Far too high a rate: every step is worse than the base model on the validation pieces, so the style
    changes nothing (strength-0 equivalent) and the run says why."""
    folder, base = style_base
    events = []
    config = replace(_config(folder, base, tmp_path / "run"), steps=6, eval_every=1, lr=3.0)
    run_training(config, events.append)
    val = {e.step: e.val_loss for e in events if e.kind == "eval"}
    assert min(val, key=val.get) == 0
    assert all(torch.count_nonzero(t) == 0 for t in _tensors(tmp_path / "run" / "style.pth").values())
    assert "no step did better than the start" in events[-1].message


def test_averaged_weights_are_the_mean_of_every_step_since_the_start_and_survive_a_resume(style_base, tmp_path):
    """average_from: from that share of the steps on, validation scores the running mean of the trained
    weights (so the result is the best such mean) while training goes on from the current weights."""
    from core.training.train import _Trainer
    from core.training.train_loss import validation_loss
    from core.training.train_weights import swapped_in
    folder, base = style_base
    n_steps = 8
    config = replace(_config(folder, base, tmp_path / "run"), steps=n_steps, eval_every=100, average_from=0.5)
    trainer = _Trainer(config, lambda e: None, lambda: False)
    trainer._prepare()
    trained = lambda: {n: p.detach().clone() for n, p in trainer.module.named_parameters()  # noqa: E731
                       if p.requires_grad}
    seen = []
    for step in range(1, n_steps + 1):
        trainer._train_step()
        seen.append(trained())
        assert (trainer.average.params is None) == (step < n_steps // 2)
    mean = {n: torch.stack([s[n] for s in seen[n_steps // 2 - 1:]]).mean(0) for n in seen[0]}
    assert trainer.average.count == n_steps - n_steps // 2 + 1
    assert all(torch.allclose(trainer.average.params[n], mean[n], atol=1e-6) for n in mean)

    current = trained()
    trainer._validate()
    assert all(torch.equal(current[n], p) for n, p in trained().items())  # training goes on from where it was
    assert trainer.best.step == n_steps
    assert all(torch.equal(trainer.best.point["params"][n], trainer.average.params[n]) for n in mean)
    with swapped_in(trainer.module, trainer.average.params):
        val = validation_loss(trainer.module, trainer.data.val_pieces, trainer.data.val_windows, config,
                              trainer.tokenizer, trainer.device)
        assert val["val_loss"] == trainer.last_val["val_loss"]

    # a paused run resumes with its running mean and ends where the straight run does
    straight = replace(config, out=str(tmp_path / "straight"))
    run_training(straight)
    run_training(replace(config, out=str(tmp_path / "paused"), stop_at_step=n_steps - 2))
    run_training(replace(config, out=str(tmp_path / "paused"), resume=True))
    a, b = _tensors(tmp_path / "straight" / "style.pth"), _tensors(tmp_path / "paused" / "style.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_keep_best_keeps_the_lowest_finite_loss_and_the_average_counts_from_its_share():
    """The two weight keepers on their own, on a one-layer module: no run, no data."""
    from torch import nn

    from core.training.train_weights import KeepBest, RunningAverage, swapped_in
    module = nn.Linear(3, 2)
    module.bias.requires_grad_(False)  # only the trained parameters are kept
    best = KeepBest(enabled=True)
    for step, loss in ((0, 2.0), (1, 1.5), (2, float("nan")), (3, 1.7)):
        with torch.no_grad():
            module.weight.fill_(step)
        best.offer(module, step, {"val_loss": loss, "bits_per_note": loss * 2})
    assert best.step == 1 and best.point["val"] == {"val_loss": 1.5, "bits_per_note": 3.0}
    assert list(best.point["params"]) == ["weight"] and torch.equal(best.point["params"]["weight"], torch.ones(2, 3))
    assert KeepBest(enabled=False, saved=best.state()).point is None  # --keep-last drops a kept point
    best.offer(module, 4, {"val_loss": 0.1}, keep_params=False)  # a rank that writes no result
    assert best.step == 4 and best.point["params"] == {}

    average = RunningAverage(0.5)
    for step in range(1, 9):  # of 8 steps, from step 4 on
        with torch.no_grad():
            module.weight.fill_(step)
        average.update(module, step, total=8)
    assert average.count == 5 and torch.equal(average.params["weight"], torch.full((2, 3), 6.0))
    resumed = RunningAverage(0.5, saved=average.state())
    assert resumed.count == 5 and resumed.params is average.params
    assert RunningAverage(None).state() is None

    with swapped_in(module, average.params):
        assert torch.equal(module.weight, torch.full((2, 3), 6.0))
    assert torch.equal(module.weight, torch.full((2, 3), 8.0))  # put back exactly

"""A training run killed with SIGKILL after a checkpoint resumes exactly where the checkpoint left it.

Exact means bit for bit, which holds only between runs with the same torch thread count (a reduction split
over other threads adds in another order): the killed CLI run gets the count of the in-process runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.network.checkpoint import load_checkpoint
from core.training.train import run_training
from core.training.train_config import TrainConfig
from tests.folders import make_folder

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 16, 4
THREADS = 1


def _config(folder: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(data=str(folder), out=str(out), n_layer=1, n_embd=64, ctx_len=32, batch_size=2,
                       steps=STEPS, checkpoint_every=EVERY, seed=3, threads=THREADS, **kw)


def _step_losses(events) -> dict[int, float]:
    return {e.step: e.loss for e in events if e.kind == "step" and e.loss is not None}


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    folder = make_folder(tmp_path, 3)
    killed_out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "core.cli", "train", str(folder), "--out", str(killed_out), "--layers", "1",
           "--width", "64", "--ctx", "32", "--batch", "2", "--steps", str(STEPS), "--checkpoint-every", str(EVERY),
           "--seed", "3", "--threads", str(THREADS)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    resume_file = killed_out / "resume.pt"
    try:
        deadline = time.monotonic() + 120
        while not resume_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(resume_file, weights_only=True)  # never half-written: atomic replace
    at = saved["step"]
    assert at % EVERY == 0 and 0 < at < STEPS, at

    resumed_events, reference_events = [], []
    resumed = run_training(_config(folder, killed_out, resume=True), resumed_events.append)
    run_training(_config(folder, tmp_path / "reference"), reference_events.append)

    resumed_losses, reference_losses = _step_losses(resumed_events), _step_losses(reference_events)
    assert sorted(resumed_losses) == list(range(at + 1, STEPS + 1))
    for step, loss in resumed_losses.items():
        assert loss == reference_losses[step], step
    a, _ = load_checkpoint(resumed["result"])
    b, _ = load_checkpoint(str(tmp_path / "reference" / "model.pth"))
    assert list(a.state_dict()) == list(b.state_dict())
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_threads_option_reaches_the_config_and_refuses_nonsense(capsys):
    import argparse

    from core.training.train_options import add_train_arguments, config_from_args

    p = argparse.ArgumentParser(prog="rwkv-music train")
    add_train_arguments(p)
    assert config_from_args(p.parse_args(["f", "--out", "o", "--threads", "3"])).threads == 3
    assert config_from_args(p.parse_args(["f", "--out", "o"])).threads is None  # torch's default
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            p.parse_args(["f", "--out", "o", "--threads", bad])
        assert "positive whole number" in capsys.readouterr().err


def test_a_budget_run_paused_before_its_length_was_fitted_fits_it_when_resumed(tmp_path):
    """A run with a time budget has no length until its first steps are timed (step 3); paused before that
    (the GUI's Cancel in the first seconds), its resume times its steps and fits the budget, instead of
    going on for the placeholder's billion steps."""
    folder = make_folder(tmp_path, 3)
    out = tmp_path / "budget"
    base = dict(data=str(folder), out=str(out), n_layer=1, n_embd=64, ctx_len=32, batch_size=2, seed=3,
                threads=THREADS, time_budget_s=3.0, checkpoint_every=1000)
    paused = []
    run_training(TrainConfig(**base, stop_at_step=2), paused.append)
    assert paused[-1].kind == "cancelled" and paused[-1].step == 2
    events = []
    give_up = time.monotonic() + 60  # without the fit it would train for ever: fail instead
    run_training(TrainConfig(**base, resume=True), events.append, lambda: time.monotonic() > give_up)
    totals = [e.total_steps for e in events if e.kind == "step"]
    assert totals and totals[-1] < 10**6, totals[-5:]
    assert events[-1].kind == "done" and events[-1].step == totals[-1]


# --- the file itself (core.training.train_resume.ResumeState) ---------------------------------------------------------------
# the entries of resume.pt since its first format: files written before keep resuming
FIRST_FORMAT_KEYS = ["format", "config", "tokenizer", "step", "epoch", "index", "bad_steps", "total_steps", "data",
                     "meta", "module", "optimizer", "best", "average", "rng"]


def _equal(a, b) -> bool:
    """Nested dicts, lists and tensors equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_a_resume_file_round_trips_and_keeps_the_first_formats_entries(tmp_path):
    from dataclasses import fields

    from core.training.train_resume import RESUME_FORMAT, ResumeState
    folder = make_folder(tmp_path, 3)
    out = tmp_path / "run"
    run_training(_config(folder, out, stop_at_step=10, average_from=0.5, val_fraction=0.3, eval_every=1))
    written = torch.load(out / "resume.pt", weights_only=True)
    assert list(written) == FIRST_FORMAT_KEYS and written["format"] == RESUME_FORMAT
    state = ResumeState.from_file(out / "resume.pt")
    assert state.step == 10 and state.total_steps == STEPS and state.average["n"] == 3 and state.best["step"] >= 0
    state.to_file(tmp_path / "again.pt")
    again = ResumeState.from_file(tmp_path / "again.pt")
    for f in fields(ResumeState):
        assert _equal(getattr(state, f.name), getattr(again, f.name)), f.name
    assert _equal(torch.load(tmp_path / "again.pt", weights_only=True), written)


def test_a_resume_file_of_an_earlier_version_without_best_or_average_reads(tmp_path):
    from core.training.train_resume import ResumeState
    folder = make_folder(tmp_path, 3)
    out = tmp_path / "run"
    run_training(_config(folder, out, stop_at_step=2))
    entries = torch.load(out / "resume.pt", weights_only=True)
    del entries["best"], entries["average"]  # the first versions wrote neither
    torch.save(entries, out / "resume.pt")
    state = ResumeState.from_file(out / "resume.pt")
    assert state.best is None and state.average is None and state.step == 2
    events = []
    run_training(_config(folder, out, resume=True), events.append)
    assert events[-1].kind == "done" and events[-1].step == STEPS


def test_what_is_not_a_resume_file_is_one_clear_error(tmp_path):
    from core.training.train_config import TrainingError
    from core.training.train_resume import ResumeState
    with pytest.raises(TrainingError, match="nothing to resume"):
        ResumeState.from_file(tmp_path / "none.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 a few bytes of a zip")
    with pytest.raises(TrainingError, match="is damaged and cannot be resumed"):
        ResumeState.from_file(tmp_path / "cut.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(TrainingError, match="not a resume checkpoint"):
        ResumeState.from_file(tmp_path / "other.pt")
    config = _config(tmp_path, tmp_path / "run")
    torch.save({"format": "rwkv-music-resume/1", "config": config.to_dict()}, tmp_path / "half.pt")
    with pytest.raises(TrainingError, match="damaged .*'tokenizer'"):
        ResumeState.from_file(tmp_path / "half.pt")


def test_a_resume_refuses_settings_that_shape_the_run(tmp_path):
    from dataclasses import replace

    from core.training.train_config import TrainingError
    from core.training.train_resume import ResumeState
    folder = make_folder(tmp_path, 3)
    config = _config(folder, tmp_path / "run", stop_at_step=1)
    run_training(config)
    state = ResumeState.from_file(tmp_path / "run" / "resume.pt")
    state.check_resumable(replace(config, steps=STEPS * 2, lr=1e-4))  # the length and the rate may change
    with pytest.raises(TrainingError, match="different ctx_len"):
        state.check_resumable(replace(config, ctx_len=64))

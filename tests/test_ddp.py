"""Data-parallel training: 2 gloo processes under torchrun compute what one process computes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.network.checkpoint import load_checkpoint
from core.training.train import run_training
from core.training.train_config import TrainConfig
from tests.folders import make_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    folder = make_folder(tmp_path, 4, broken=False)
    steps, batch = 3, 4
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "core.training.train", str(folder), "--out", str(tmp_path / "ddp"), "--layers", "2", "--width", "64",
           "--ctx", "32", "--batch", str(batch), "--steps", str(steps), "--lr", "3e-3", "--device", "cpu",
           "--threads", "1", "--eval-every", str(steps)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp_events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    ddp_losses = {e["step"]: e["loss"] for e in ddp_events if e["kind"] == "step" and "loss" in e}

    events = []
    run_training(TrainConfig(data=str(folder), out=str(tmp_path / "single"), n_layer=2, n_embd=64, ctx_len=32,
                             batch_size=batch, steps=steps, lr=3e-3, device="cpu", eval_every=steps),
                 events.append)
    losses = {e.step: e.loss for e in events if e.kind == "step" and e.loss is not None}
    assert sorted(ddp_losses) == sorted(losses) == [1, 2, 3]
    for step in losses:
        assert ddp_losses[step] == pytest.approx(losses[step], rel=1e-4)
    ddp_evals = {e["step"]: e["val_loss"] for e in ddp_events if e["kind"] == "eval"}
    single_evals = {e.step: e.val_loss for e in events if e.kind == "eval"}
    assert sorted(ddp_evals) == sorted(single_evals) == [0, steps]  # the start is validated too (keep-best)
    for step in ddp_evals:
        assert ddp_evals[step] == pytest.approx(single_evals[step], rel=1e-4)

    a, _ = load_checkpoint(str(tmp_path / "ddp" / "model.pth"))
    b, _ = load_checkpoint(str(tmp_path / "single" / "model.pth"))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)

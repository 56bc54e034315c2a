"""A training run's settings (core.training.train_config.TrainConfig): its defaults are written once and the command
line reads them from there; a setting it does not have is refused by name, never silently dropped."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import subprocess
import sys

import pytest
import torch

from core.training.train import run_training
from core.training.train_config import DEFAULT_DROPOUT, DEFAULT_STYLE_PARTS, RESUME_FILE, TrainConfig, TrainingError
from core.training.train_options import add_train_arguments, config_from_args
from core.training.train_resume import RESUME_FORMAT

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rwkv-music train")
    add_train_arguments(p)
    return p


def test_from_dict_refuses_a_setting_it_does_not_have_and_names_it():
    config = TrainConfig(data="midi", out="run", mode="lora", ctx_len=64)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown training setting: ctx\b"):
        TrainConfig.from_dict({"data": "midi", "out": "run", "ctx": 64})  # the option's name, not the field's
    with pytest.raises(ValueError, match="unknown training settings: batch, colour"):
        TrainConfig.from_dict({"data": "midi", "out": "run", "colour": 1, "batch": 2, "mode": "full"})


def test_the_command_line_defaults_are_train_configs():
    assert config_from_args(_parser().parse_args(["midi", "--out", "run"])) == TrainConfig(data="midi", out="run")
    help_text = _parser().format_help()
    assert f"(default {DEFAULT_STYLE_PARTS})" in " ".join(help_text.split())
    given = config_from_args(_parser().parse_args(
        ["midi", "--out", "run", "--ctx", "64", "--batch", "2", "--layers", "1", "--width", "32", "--mode", "state",
         "--stop-at", "7", "--time-budget", "2m", "--no-dynamics-flag", "--infill-share", "0.25"]))
    assert (given.ctx_len, given.batch_size, given.n_layer, given.n_embd, given.mode) == (64, 2, 1, 32, "state")
    assert (given.stop_at_step, given.time_budget_s, given.dynamics_flag, given.infill_share) == (7, 120.0, False, 0.25)
    assert config_from_args(_parser().parse_args(["midi", "--out", "run", "--dropout", "0"])).dropout == 0.0


@pytest.mark.parametrize("mode, given, expected", [("style", None, DEFAULT_DROPOUT["style"]), ("style", 0.0, 0.0),
                                                   ("full", None, 0.0), ("lora", 0.1, 0.1)])
def test_the_trained_model_drops_out_by_the_mode_unless_told(mode, given, expected):
    from core.network.model import ModelConfig, RWKV7
    from core.training.train_model import wrap
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=32, head_size=64))
    wrap(model, TrainConfig(data="midi", out="run", mode=mode, dropout=given))
    assert model.dropout == expected
    with pytest.raises(TrainingError, match="dropout must be at least 0 and below 1, not 1"):
        wrap(model, TrainConfig(data="midi", out="run", mode=mode, dropout=1.0))


def test_no_default_is_written_outside_train_config():
    """Every default= in the options module reads TrainConfig (or is a plain flag's False)."""
    tree = ast.parse((ROOT / "core" / "training" / "train_options.py").read_text())
    written = [ast.unparse(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
               for k in node.keywords if k.arg == "default" and isinstance(k.value, ast.Constant)]
    assert written == []


def test_the_parser_and_the_job_side_of_training_load_no_torch():
    code = ("import sys, core.cli, core.training.train_options, core.training.train_config, core.training.train_job\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy') or m == 'core.training.train'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_resume_file_with_a_setting_this_version_lacks_is_one_clear_error(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "midi").mkdir()
    config = TrainConfig(data=str(tmp_path / "midi"), out=str(out), n_layer=1, n_embd=64, ctx_len=32, device="cpu")
    torch.save({"format": RESUME_FORMAT, "config": {**config.to_dict(), "colour": "blue"}}, out / RESUME_FILE)
    with pytest.raises(TrainingError, match="another version: unknown training setting: colour"):
        run_training(dataclasses.replace(config, resume=True))

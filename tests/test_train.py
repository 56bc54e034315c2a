"""core.training.train: the real RWKV-7 model (tiny) learning real pieces; every mode's file loads in eval."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from core import cli
from core.training.lora import apply_lora, merge_lora
from core.network.checkpoint import load_checkpoint, load_state_file
from core.network.model import ModelConfig, RWKV7
from core.tokenizer import Tokenizer
from core.training.train import run_training
from core.training.train_config import TrainConfig, TrainingError
from core.training.train_data import BatchOrder
from core.training.train_job import start_job
from core.network.step import step_tokens
from core.training.train_schedule import lr_at
from tests.folders import make_folder

TINY = ["--layers", "1", "--width", "64", "--ctx", "32", "--batch", "4"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """Pretrain a tiny model from scratch through the CLI on real pieces plus two broken files."""
    root = tmp_path_factory.mktemp("train")
    folder = make_folder(root, 5)
    out = root / "scratch"
    code = cli.main(["train", str(folder), "--out", str(out), *TINY, "--steps", "16", "--lr", "5e-3",
                     "--eval-every", "8", "--checkpoint-every", "8"])
    assert code == 0
    return folder, out


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_a_time_budget_sets_the_length_from_the_first_steps_and_ends_an_overshooting_run():
    """BudgetFit on a made-up clock: the first step (it warms up) is left out of the speed, the length is set
    at step 3, and a run 5% past its budget ends at once."""
    from core.training.train_schedule import UNFITTED_STEPS, BudgetFit, Schedule
    config = TrainConfig(data="d", out="o", time_budget_s=100.0, stop_at_step=60)
    schedule = Schedule.plan(config, steps_per_epoch=10)
    assert schedule.unfitted and schedule.total == UNFITTED_STEPS and schedule.stop_at == 60
    fit = BudgetFit(config, started=0.0, first_step=0, validation_windows=0, steps_per_epoch=10)
    assert fit.after_step(schedule, 1, now=5.0) is None and fit.after_step(schedule, 2, now=6.0) is None
    assert fit.after_step(schedule, 3, now=7.0) == "1.00 s per step: 96 steps fit the time budget"
    assert (schedule.total, schedule.stop_at, schedule.warmup) == (96, 60, 4)
    assert fit.after_step(schedule, 50, now=106.0) is None
    assert (schedule.total, schedule.stop_at) == (50, 50)
    capped_config = TrainConfig(data="d", out="o", time_budget_s=100.0, steps=20)
    capped = Schedule.plan(capped_config, steps_per_epoch=10)
    fit = BudgetFit(capped_config, started=0.0, first_step=0, validation_windows=0, steps_per_epoch=10)
    for step, now in ((1, 5.0), (2, 6.0), (3, 7.0)):
        fit.after_step(capped, step, now)
    assert capped.total == 20  # --steps is the most a budget gives


def test_batches_deal_every_window_once_an_epoch_with_like_lengths_together():
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 514, size=800).tolist()  # a folder of short tunes: most windows not full
    batches = BatchOrder(lengths, batch=8, seed=3)
    epoch = [batches.indices(0, i) for i in range(batches.per_epoch)]
    assert sorted(i for b in epoch for i in b) == list(range(800))

    def padded(order):  # what the batches cost: each pads to its longest window
        return sum(len(b) * max(lengths[i] for i in b) for b in order)

    shuffled = np.random.default_rng(1).permutation(800).reshape(100, 8).tolist()
    assert padded(epoch) < 0.8 * padded(shuffled)
    # deterministic from (seed, epoch); another epoch or seed is another order
    assert epoch == [BatchOrder(lengths, 8, 3).indices(0, i) for i in range(100)]
    assert epoch != [batches.indices(1, i) for i in range(100)]
    assert epoch != [BatchOrder(lengths, 8, 4).indices(0, i) for i in range(100)]
    # the batch order is shuffled, not sorted by length
    longest = [max(lengths[i] for i in b) for b in epoch]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_fewer_windows_than_a_batch_repeat_them():
    batches = BatchOrder([10, 20, 30], batch=8, seed=0)
    assert batches.per_epoch == 1
    assert sorted(set(batches.indices(0, 0))) == [0, 1, 2] and len(batches.indices(0, 0)) == 8


def test_scratch_training_learns_and_reports_broken_files(base_run, capsys):
    folder, out = base_run
    log = _log(out)
    losses = [e["loss"] for e in log if e["kind"] == "step" and "loss" in e]
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 1.0  # from ~ln(V) towards the data
    evals = [e for e in log if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [0, 8, 16] and evals[-1]["val_loss"] < evals[0]["val_loss"]  # 0: the start
    assert log[0]["kind"] == "scan" and log[-1]["kind"] == "done"
    report = json.loads((out / "scan_report.json").read_text())
    assert len(report["used"]) == 5
    assert {s["path"] for s in report["skipped"]} == {"nested/deeper/noise.mid", "cut.midi"}
    model, meta = load_checkpoint(str(out / "model.pth"))
    assert model.config.n_layer == 1 and meta["tokenizer"]["version"] == Tokenizer.VERSION
    assert {e["step"] for e in log if e["kind"] == "checkpoint"} == {8, 16}


def test_eval_matches_the_recurrent_step(base_run, capsys):
    """`eval` (parallel form, chunked) scores each token exactly as the one-token step does."""
    folder, out = base_run
    piece = sorted(folder.rglob("*.mid"))[0]
    assert cli.main(["eval", "--model", str(out / "model.pth"), str(piece), "--json", "--no-memory"]) == 0
    result = json.loads(capsys.readouterr().out)
    (entry,) = result["files"]
    from core.midi import read_midi
    tok = Tokenizer()
    ids = tok.encode(read_midi(piece)[0])
    model, _ = load_checkpoint(str(out / "model.pth"))
    state, bits = model.init_state(1), 0.0
    for cur, nxt in zip(ids[:-1], ids[1:]):
        logits, state = step_tokens(model, torch.tensor([cur]), state)
        bits -= torch.log_softmax(logits[0].double(), -1)[nxt].item() / math.log(2)
    assert entry["tokens"] == len(ids) and entry["nll_bits"] == pytest.approx(bits, rel=1e-4)
    notes = sum(1 for t in ids if tok.kind(t) == "pitch")
    assert result["bits_per_note"] == pytest.approx(bits / notes, rel=1e-4)
    assert result["bits_per_token"] == pytest.approx(bits / (len(ids) - 1), rel=1e-4)


def test_lora_and_state_modes_export_files_that_eval_loads(base_run, tmp_path, capsys):
    folder, out = base_run
    base = str(out / "model.pth")
    base_model, _ = load_checkpoint(base)
    lora_out, state_out = tmp_path / "lora", tmp_path / "state"
    assert cli.main(["train", str(folder), "--out", str(lora_out), "--base", base, "--mode", "lora",
                     "--ctx", "32", "--batch", "2", "--steps", "3", "--lr", "1e-2", "--augment", "--keep-last"]) == 0
    assert cli.main(["train", str(folder), "--out", str(state_out), "--base", base, "--mode", "state",
                     "--ctx", "32", "--batch", "2", "--steps", "3", "--lr", "5e-2", "--completion-only",
                     "--keep-last"]) == 0  # what the last step wrote, not the best point (tests/test_keep_best.py)
    capsys.readouterr()

    merged, meta = load_checkpoint(str(lora_out / "model.pth"))
    assert meta["training"]["mode"] == "lora"
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, base_model.state_dict()[k])}
    assert changed and all(k.startswith("blocks.0.att.") or k.startswith("blocks.0.ffn.") for k in changed)
    assert all(k.endswith(("receptance.weight", "key.weight", "value.weight", "output.weight")) for k in changed)

    wkv, style_meta = load_state_file(str(state_out / "style.pth"), base_model)
    assert wkv.abs().sum() > 0 and (state_out / "style.pth").stat().st_size < 1_000_000
    assert not (state_out / "model.pth").exists()

    piece = str(sorted(folder.rglob("*.mid"))[1])
    scores = {}
    for name, args in (("base", ["--model", base]), ("lora", ["--model", str(lora_out / "model.pth")]),
                       ("state", ["--model", base, "--style", str(state_out / "style.pth")])):
        assert cli.main(["eval", *args, piece, "--json"]) == 0
        scores[name] = json.loads(capsys.readouterr().out)["bits_per_token"]
    assert len(set(scores.values())) == 3 and all(math.isfinite(v) for v in scores.values())

    # generation loads each result too: one bar after the piece's first bars
    from core.generate import SamplingConfig, generate
    from core.midi import read_midi
    prompt = read_midi(piece)[0]
    prompt = prompt.slice(0, prompt.bar_starts()[2])
    for model_path, style in ((str(lora_out / "model.pth"), None), (base, str(state_out / "style.pth"))):
        (result,) = generate(model_path, prompt, style_path=style, bars=1, sampling=SamplingConfig(seed=1))
        assert len(result.notes) >= len(prompt.notes)


def test_lora_merge_gives_the_same_model():
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=64, vocab_size=50))
    names = apply_lora(model, rank=4, alpha=8)
    assert len(names) == 12 and not any(p.requires_grad for n, p in model.named_parameters() if "original" in n)
    for m in model.modules():
        if hasattr(m, "B") and isinstance(m.B, torch.nn.Parameter):
            torch.nn.init.normal_(m.B, std=0.02)
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        before = model(idx)
        merge_lora(model)
        after = model(idx)
    assert set(model.state_dict()) == set(RWKV7(ModelConfig(2, 64, 50)).state_dict())
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-5)


def test_non_finite_steps_are_skipped_then_training_stops(base_run, tmp_path):
    folder, out = base_run
    config = TrainConfig(data=str(folder), out=str(tmp_path), base=str(out / "model.pth"), ctx_len=32,
                         batch_size=2, steps=40, lr=1e12, warmup_steps=0, grad_clip=1e30, max_bad_steps=2,
                         checkpoint_every=1000, eval_every=1000)
    events = []
    with pytest.raises(TrainingError, match="diverged"):
        run_training(config, events.append)
    skipped = [e for e in events if e.kind == "step" and "non-finite" in e.message]
    assert skipped and events[-1].kind == "checkpoint"
    # the skipped steps left the weights as they were: finite
    ckpt = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["module"].values() if v.is_floating_point())


@pytest.mark.slow  # a spawned child imports torch afresh
def test_job_runs_in_a_child_process_and_cancels_with_a_checkpoint(base_run, tmp_path):
    folder, out = base_run
    config = TrainConfig(data=str(folder), out=str(tmp_path), base=str(out / "model.pth"), ctx_len=32,
                         batch_size=2, steps=10_000, checkpoint_every=10_000, eval_every=10_000)
    job = start_job(config)
    kinds = []
    for event in job.events():
        kinds.append(event.kind)
        if event.kind == "step" and event.loss is not None and event.step >= 2:
            job.cancel()
    final = job.final
    assert kinds[0] == "scan" and final.kind == "cancelled" and 2 <= final.step < 10_000
    assert job._proc.pid != os.getpid() and not job._proc.is_alive()
    ckpt = torch.load(final.paths["resume"], weights_only=True)
    assert ckpt["step"] == final.step
    # and it resumes from there
    resumed = run_training(TrainConfig(**{**config.to_dict(), "resume": True, "stop_at_step": final.step + 1}))
    assert torch.load(resumed["resume"], weights_only=True)["step"] == final.step + 1


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="no usable MIDI"):
        (tmp_path / "empty").mkdir()
        run_training(TrainConfig(data=str(tmp_path / "empty"), out=str(tmp_path / "o"), n_layer=1, n_embd=64))
    with pytest.raises(TrainingError, match="nothing to resume"):
        run_training(TrainConfig(data=str(tmp_path / "empty"), out=str(tmp_path / "o2"), resume=True))
    assert cli.main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")]) == 2


def test_job_scans_a_real_folder_with_worker_processes(tmp_path):
    """The job's child process may start the tokenizer's worker pool (a daemonic child could not)."""
    from core.training.data import PARALLEL_MIN_FILES
    folder = make_folder(tmp_path, PARALLEL_MIN_FILES + 2)
    job = start_job(TrainConfig(data=str(folder), out=str(tmp_path / "out"), n_layer=1, n_embd=64, steps=1,
                                ctx_len=32, batch_size=2, workers=2, eval_every=10_000))
    kinds = [e.kind for e in job.events()]
    assert kinds[0] == "scan" and job.final.kind == "done", kinds

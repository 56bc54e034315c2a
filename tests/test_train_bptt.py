"""Long windows in spans (--bptt): the state carried from span to span gives the logits of one pass over the
window (the bundled model, real pieces), the gradient is the whole window's when a span holds it, a run
resumes exactly, and bad settings are refused."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.training import data as D
from core.training.train import _Trainer, run_training
from core.training.train_config import TrainConfig, TrainingError
from core.training.train_loss import span_nll
from tests.folders import make_folder

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "rwkv7-music-base.pth"


def _trainer(tmp_path: Path, **kw) -> _Trainer:
    cfg = TrainConfig(data=str(make_folder(tmp_path, 4, broken=False)), out=str(tmp_path / "out"), base=str(BUNDLED),
                      mode="full", batch_size=2, val_fraction=0, threads=1, **kw)
    trainer = _Trainer(cfg, lambda e: None, lambda: False)
    trainer._prepare()
    return trainer


def _batch(trainer: _Trainer, lengths: tuple[int, int]):
    """Two real windows cut to different lengths (the shorter one leaves the spans early)."""
    exs = []
    longest = sorted(trainer.data.train_windows, key=lambda w: -w.n_tokens)[:2]
    for w, n in zip(longest, lengths):
        tokens, _ = D.window_tokens(trainer.data.train_pieces, w)
        assert len(tokens) > n
        exs.append(D.build_example(tokens[:n + 1], trainer.config.ctx_len, 0, trainer.tokenizer.pad_id))
    return D.collate(exs, trainer.tokenizer.pad_id)


def _one_pass_nll(trainer: _Trainer, inputs, targets, mask) -> torch.Tensor:
    logits = trainer.module(inputs)
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum()


def _grads(trainer: _Trainer) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in trainer.module.named_parameters() if p.grad is not None}
    trainer.module.zero_grad(set_to_none=True)
    return out


def test_spans_with_the_state_carried_equal_one_pass(tmp_path):
    trainer = _trainer(tmp_path, ctx_len=256, bptt=48)
    inputs, targets, mask = _batch(trainer, (240, 100))
    trainer.module.eval()
    with torch.no_grad():
        whole = _one_pass_nll(trainer, inputs, targets, mask)
        spans = span_nll(trainer.module.model, inputs, targets, mask, 48)
    assert torch.allclose(spans, whole, rtol=1e-5), (float(spans), float(whole))
    zero = torch.zeros_like(mask)  # nothing scored: nothing run
    assert float(span_nll(trainer.module.model, inputs, targets, zero, 48)) == 0.0


def test_a_span_holding_the_window_gives_its_gradient_and_shorter_spans_truncate_it(tmp_path):
    trainer = _trainer(tmp_path, ctx_len=128, bptt=128)
    inputs, targets, mask = _batch(trainer, (120, 70))
    trainer.module.train()
    _one_pass_nll(trainer, inputs, targets, mask).backward()
    reference = _grads(trainer)
    loss = span_nll(trainer.module.model, inputs, targets, mask, 128, backward_scale=1.0)
    same = _grads(trainer)
    for name, g in reference.items():
        assert torch.allclose(same[name], g, rtol=1e-4, atol=1e-6), name
    truncated = span_nll(trainer.module.model, inputs, targets, mask, 32, backward_scale=1.0)
    cut = _grads(trainer)
    assert torch.allclose(truncated, loss, rtol=1e-5)  # the loss is the window's either way
    assert all(torch.isfinite(g).all() for g in cut.values())
    assert any(not torch.allclose(cut[n], g, rtol=1e-3) for n, g in reference.items())  # the past is cut off


def test_a_run_in_spans_resumes_exactly(tmp_path):
    folder = make_folder(tmp_path, 3, broken=False)

    def config(out: str, **kw) -> TrainConfig:
        return TrainConfig(data=str(folder), out=str(tmp_path / out), n_layer=1, n_embd=64, ctx_len=128, bptt=32,
                           batch_size=2, steps=6, checkpoint_every=3, seed=5, threads=1, val_fraction=0.3, **kw)

    def losses(events) -> dict[int, float]:
        return {e.step: e.loss for e in events if e.kind == "step" and e.loss is not None}

    reference, first, resumed = [], [], []
    run_training(config("ref"), reference.append)
    run_training(config("run", stop_at_step=3), first.append)
    run_training(config("run", resume=True), resumed.append)
    assert losses(first) | losses(resumed) == losses(reference)
    assert any(e.kind == "eval" and e.bits_per_note for e in reference)


@pytest.mark.parametrize("kw, words", [({"bptt": 40}, "multiple of 16"),
                                        ({"bptt": 32, "mode": "style"}, "full or lora")])
def test_bad_span_settings_are_refused(tmp_path, kw, words):
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "out"), base=str(BUNDLED), **kw)
    with pytest.raises(TrainingError, match=words):
        _Trainer(cfg, lambda e: None, lambda: False)

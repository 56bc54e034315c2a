"""Training with the piece memory in the loop (--memory-loss, core/training/memory_loss.py): on a real song and
the bundled model its loss is -log of the probability core.memory.MemoryMixer gives each target (the mixture
the product samples from; no grammar mask, as training has none) and its gradient reaches the network; in
spans with the state carried it sums to the one-pass loss; a run with it trains and
resumes exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.memory import MemoryMixer, PieceMemory
from core.midi import read_midi
from core.network.checkpoint import load_checkpoint
from core.training.memory_loss import batch_memory_columns, memory_columns, mixture_nll
from core.training.train import run_training
from core.training.train_config import TrainConfig
from core.training.train_loss import batch_nll, span_nll
from core.tokenizer import Tokenizer
from tests.folders import make_folder

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "resources" / "rwkv7-music-base.pth"
DATA = Path(__file__).parent / "data"


def bundled():
    model, meta = load_checkpoint(str(BUNDLED))
    return model.eval(), Tokenizer.from_dict(meta["tokenizer"])


def test_the_memory_loss_is_the_mixture_the_product_samples_from():
    model, tok = bundled()
    ids = tok.encode(read_midi(str(DATA / "pop909" / "001.mid"))[0])[:3000]
    inputs, targets = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    n = len(ids) - 1
    columns = torch.as_tensor(memory_columns(inputs[0].numpy(), targets[0].numpy(), n))[None]
    logits = model(inputs, backend="train")  # the training kernel: the one with a backward pass
    per_token = [float(mixture_nll(logits[:, i:i + 1], targets[:, i:i + 1], torch.ones(1, 1),
                                   columns[:, i:i + 1]).detach()) for i in range(n)]
    probs = torch.softmax(logits[0].double(), -1).detach().numpy()
    mixer = MemoryMixer(PieceMemory())
    expected = []
    for i in range(n):
        mixer.append(ids[i])
        expected.append(-np.log(mixer.mixed(probs[i].copy())[ids[i + 1]]))
    assert np.allclose(per_token, expected, atol=1e-4)
    plain = torch.nn.functional.cross_entropy(logits[0].double(), targets[0], reduction="none").detach().numpy()
    assert sum(per_token[1500:]) < 0.9 * plain[1500:].sum()  # the song repeats itself: the memory carries part of it
    model.zero_grad()
    mixture_nll(logits, targets, torch.ones(1, n), columns).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["emb.weight"].abs().sum() > 0 and grads["head.weight"].abs().sum() > 0


def test_in_spans_the_memory_loss_sums_to_the_one_pass_loss():
    model, tok = bundled()
    ids = tok.encode(read_midi(str(DATA / "pop909" / "001.mid"))[0])[:3001]
    inputs, targets = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    mask = torch.ones(1, 3000)
    mask[0, :10] = 0  # a restated header, unscored
    memory = batch_memory_columns(inputs, targets, mask)
    with torch.no_grad():
        whole = batch_nll(model, inputs, targets, mask, memory)
        spans = span_nll(model, inputs, targets, mask, 640, memory=memory)
        plain = batch_nll(model, inputs, targets, mask)
    assert torch.allclose(spans, whole, rtol=1e-5), (float(spans), float(whole))
    assert float(whole) < float(plain)  # a song's first 3,000 tokens repeat enough for the memory to pay


def test_a_run_with_the_memory_loss_trains_and_resumes_exactly(tmp_path):
    folder = make_folder(tmp_path, 3, broken=False)

    def config(out: str, **kw) -> TrainConfig:
        return TrainConfig(data=str(folder), out=str(tmp_path / out), base=str(BUNDLED), mode="full", ctx_len=256,
                           batch_size=2, steps=4, checkpoint_every=2, seed=3, threads=1, val_fraction=0,
                           memory_loss=True, **kw)

    def losses(events) -> dict[int, float]:
        return {e.step: e.loss for e in events if e.kind == "step" and e.loss is not None}

    reference, first, resumed, plain = [], [], [], []
    run_training(config("ref"), reference.append)
    run_training(config("run", stop_at_step=2), first.append)
    run_training(config("run", resume=True), resumed.append)
    assert losses(first) | losses(resumed) == losses(reference)
    run_training(TrainConfig(**{**config("plain").to_dict(), "memory_loss": False}), plain.append)
    # the same first batch and weights, scored as the mixture: another loss (what it is: the first test)
    assert abs(losses(reference)[1] - losses(plain)[1]) > 1e-3
    assert (tmp_path / "ref" / "model.pth").is_file()

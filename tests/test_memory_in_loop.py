"""bench/memory_in_loop.py's training loss is the product's mixture: on a real piece and the bundled model, its
per-token NLL equals -log of core.memory.MemoryMixer's mixed probability of each target (no grammar mask,
as training has none), and its gradient reaches the network."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.memory_in_loop import memory_columns, mixture_nll
from core.memory import MemoryMixer, PieceMemory
from core.midi import read_midi
from core.network.checkpoint import load_checkpoint
from core.paths import base_model
from core.tokenizer import Tokenizer
DATA = Path(__file__).parent / "data"


def test_the_memory_loss_is_the_mixture_the_product_samples_from():
    model, meta = load_checkpoint(str(base_model()))
    model.eval()
    tok = Tokenizer.from_dict(meta["tokenizer"])
    ids = tok.encode(read_midi(str(DATA / "pop909" / "001.mid"))[0])[:3000]
    inputs, targets = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    n = len(ids) - 1
    cols = torch.as_tensor(memory_columns(inputs[0].numpy(), targets[0].numpy(), n))[None]
    logits = model(inputs, backend="train")  # the training kernel: the one with a backward pass
    per_token = [float(mixture_nll(logits[:, i:i + 1], targets[:, i:i + 1], torch.ones(1, 1), cols[:, i:i + 1]).detach())
                 for i in range(n)]
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
    mixture_nll(logits, targets, torch.ones(1, n), cols).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert grads["emb.weight"].abs().sum() > 0 and grads["head.weight"].abs().sum() > 0

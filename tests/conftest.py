"""Shared fixtures. Keep small: several test files use these."""
from __future__ import annotations

import pytest
import torch

from tools.jack import JackServer, jackd_available


# One thread: CI machines have 2 shared cores, and an oversubscribed torch thread pool made tests
# 10-20x slower there (measured), while no test depends on parallel speed.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def jack_server():
    """A private jackd (dummy driver, 64-frame periods) for the whole session: a real MIDI loopback.

    It runs under a unique server name that every JACK client of this process uses; killed by PID at the end.
    """
    if not jackd_available():
        pytest.skip("jackd is not installed (apt-get install jackd2): no real MIDI loopback")
    server = JackServer(period=64, rate=48000)
    try:
        server.start()
    except RuntimeError as e:
        pytest.skip(f"jackd did not start: {e}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A small real RWKV-7 (2 layers, 128 wide, random weights, fixed seed) saved with the tokenizer.

    The training init zeroes the output projections (the WKV state would then change nothing): these get
    small random values, so the recurrent state and a style really shape what the model says."""
    import torch

    from core.network.checkpoint import save_checkpoint
    from core.network.model import ModelConfig, RWKV7
    from core.tokenizer import Tokenizer

    tok = Tokenizer()
    torch.manual_seed(1234)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=128, vocab_size=tok.vocab_size))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("att.output.weight", "ffn.value.weight")):
                p.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("tiny-model") / "tiny.pth"
    save_checkpoint(model, str(path), {"tokenizer": tok.to_dict()})
    return str(path)


@pytest.fixture(scope="module")
def gen(tiny_checkpoint):
    """A Generator over tiny_checkpoint, one per test module (its prefill cache stays within the module)."""
    from core.generate import Generator

    return Generator.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def style_base(tmp_path_factory):
    """A folder of three real pieces and a tiny base model pretrained on it (the style and fine-tuning mode
    tests). A few steps from scratch: a fresh RWKV-7 has zero output projections, so no gradient would reach
    a style."""
    from core.training.train import run_training
    from core.training.train_config import TrainConfig
    from tests.folders import make_folder
    root = tmp_path_factory.mktemp("style")
    folder = make_folder(root, 3, broken=False)
    paths = run_training(TrainConfig(data=str(folder), out=str(root / "base"), n_layer=1, n_embd=64, ctx_len=32,
                                     batch_size=2, steps=4, lr=5e-3, workers=1))
    return folder, paths["result"]

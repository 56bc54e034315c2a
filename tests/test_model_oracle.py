"""Our RWKV-7 against an independent implementation: the `rwkv` package from PyPI, loading the
very file that save_checkpoint wrote, unchanged.

The package reads RWKV_V7_ON / RWKV_DE_VERSION when it is imported, so it runs in a child
process with its own environment; nothing leaks into the other tests.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from core.network.checkpoint import save_checkpoint
from core.network.model import ModelConfig, RWKV7
from core.network.step import step_tokens

pytest.importorskip("rwkv")

V, T_PROMPT, T_STEPS = 211, 200, 100

ORACLE = textwrap.dedent("""
    import json, os, sys
    os.environ["RWKV_V7_ON"] = "1"
    if sys.argv[2] == "1":
        os.environ["RWKV_DE_VERSION"] = "1"
    import torch
    from rwkv.model import RWKV
    torch.set_num_threads(1)
    tokens = json.loads(sys.argv[3])
    model = RWKV(model=sys.argv[1], strategy="cpu fp32")   # the path without ".pth"
    n_prompt = int(sys.argv[4])
    logits, state = model.forward(tokens[:n_prompt], None, full_output=True)  # its sequence mode
    rows = [logits]
    for tok in tokens[n_prompt:]:                                            # its one-token mode
        out, state = model.forward([tok], state)
        rows.append(out[None])
    torch.save(torch.cat(rows), sys.argv[5])
""")


def run_oracle(ckpt_path, deep_embed, tokens, out_path) -> torch.Tensor:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWKV_")}
    proc = subprocess.run(
        [sys.executable, "-c", ORACLE, str(ckpt_path)[: -len(".pth")], "1" if deep_embed else "0",
         json.dumps(tokens), str(T_PROMPT), str(out_path)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out_path, weights_only=True)


@pytest.mark.parametrize("deep_embed", [False, True], ids=["plain", "deep_embed"])
def test_logits_match_the_rwkv_package(tmp_path, deep_embed):
    torch.manual_seed(20 + deep_embed)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=128, vocab_size=V, deep_embed=deep_embed))
    with torch.no_grad():  # perturb everything so no zero-initialised term goes untested
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    path = tmp_path / "model.pth"
    save_checkpoint(model, path, {"tokenizer": {"note": "metadata the package must tolerate"}})
    tokens = torch.randint(0, V, (T_PROMPT + T_STEPS,), generator=torch.Generator().manual_seed(21)).tolist()

    theirs = run_oracle(path, deep_embed, tokens, tmp_path / "theirs.pt")

    idx = torch.tensor([tokens])
    with torch.no_grad():
        ours_parallel = model(idx)[0]
    _, state = model.prefill(idx[:, :T_PROMPT])
    stepped = []
    for tok in tokens[T_PROMPT:]:
        logits, state = step_tokens(model, torch.tensor([tok]), state)
        stepped.append(logits[0])
    ours_recurrent = torch.stack(stepped)

    assert theirs.shape == (T_PROMPT + T_STEPS, V)
    scale = theirs.abs().max().item()
    assert scale > 1.0
    assert (ours_parallel - theirs).abs().max().item() <= 1e-5 * scale
    assert (ours_recurrent - theirs[T_PROMPT:]).abs().max().item() <= 1e-5 * scale

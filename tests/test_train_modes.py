"""Every fine-tuning mode trains past several mid-run checkpoints, pauses, resumes exactly, and exports
a file that loads (the real RWKV-7 model, tiny)."""
from __future__ import annotations

import pytest
import torch

from core.network.checkpoint import load_checkpoint, load_state_file
from core.training.train import run_training
from core.training.train_config import TrainConfig

STEPS, EVERY, PAUSE = 8, 2, 4


def _config(folder, base, out, mode, **kw) -> TrainConfig:
    return TrainConfig(data=str(folder), out=str(out), base=str(base), mode=mode, ctx_len=32, batch_size=2,
                       steps=STEPS, checkpoint_every=EVERY, eval_every=EVERY, lora_rank=4, seed=5, workers=1, **kw)


def _run(config: TrainConfig):
    events = []
    paths = run_training(config, events.append)
    return paths, events


@pytest.mark.parametrize("mode", ["full", "lora", "state"])
def test_mode_trains_past_checkpoints_resumes_and_exports(style_base, tmp_path, mode):
    folder, base = style_base
    out = tmp_path / "paused"
    _, first = _run(_config(folder, base, out, mode, stop_at_step=PAUSE))
    assert [e.step for e in first if e.kind == "checkpoint"] == [2, 4]
    assert first[-1].kind == "cancelled" and first[-1].step == PAUSE
    paths, second = _run(_config(folder, base, out, mode, resume=True))
    assert [e.step for e in second if e.kind == "checkpoint"] == [6, 8]
    assert second[-1].kind == "done"
    ref_paths, ref = _run(_config(folder, base, tmp_path / "straight", mode))
    assert [e.step for e in ref if e.kind == "checkpoint"] == [2, 4, 6, 8]

    # the resumed run continues exactly where the uninterrupted one is
    losses = {e.step: e.loss for e in first + second if e.kind == "step" and e.loss is not None}
    ref_losses = {e.step: e.loss for e in ref if e.kind == "step" and e.loss is not None}
    assert sorted(losses) == list(range(1, STEPS + 1)) == sorted(ref_losses)
    for step in losses:
        assert losses[step] == pytest.approx(ref_losses[step], rel=1e-5, abs=1e-6), step

    base_model, _ = load_checkpoint(str(base))
    if mode == "state":
        wkv, _ = load_state_file(paths["result"], base_model)
        ref_wkv, _ = load_state_file(ref_paths["result"], base_model)
        assert wkv.abs().sum() > 0
        torch.testing.assert_close(wkv, ref_wkv, rtol=1e-5, atol=1e-6)
        return
    model, meta = load_checkpoint(paths["result"])
    ref_model, _ = load_checkpoint(ref_paths["result"])
    assert meta["training"]["mode"] == mode and meta["step"] == STEPS
    sd, base_sd = model.state_dict(), base_model.state_dict()
    assert set(sd) == set(base_sd)  # a plain model: adapters merged into the weights
    changed = {k for k in sd if not torch.equal(sd[k], base_sd[k])}
    assert changed
    if mode == "lora":
        assert all(k.endswith(("receptance.weight", "key.weight", "value.weight", "output.weight")) for k in changed)
    for k, v in ref_model.state_dict().items():
        torch.testing.assert_close(sd[k], v, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("mode, scales", [("full", {None: 1.0}), ("lora", {None: 1.0}), ("state", {"state": 1.0}),
                                          ("style", {"lora": 1.0, "offset": 10.0, "bias": 1.0, "state": 20.0})])
def test_every_mode_gives_its_optimizer_groups_the_same_way(mode, scales):
    """wrap(model)'s module, whatever the mode, names its AdamW groups with optimizer_groups(peak_lr, weight_decay):
    every trainable parameter once, each group at its multiple of the run's rate (core.training.train_config.PART_LR_SCALE)."""
    from core.network.model import ModelConfig, RWKV7
    from core.training.train_model import wrap
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=97))
    module = wrap(model, TrainConfig(data="d", out="o", mode=mode, lora_rank=4, style_rank=2, offset_rank=4))
    groups = module.optimizer_groups(2e-3, 0.05)
    assert {g.get("part") for g in groups} == set(scales)
    for g in groups:
        assert g["lr_scale"] == scales[g.get("part")] and g["lr"] == pytest.approx(2e-3 * g["lr_scale"])
        assert g["weight_decay"] in (0.0, 0.05)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    assert {id(p) for p in grouped} == {id(p) for p in module.parameters() if p.requires_grad}

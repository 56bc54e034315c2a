"""Checkpoint and state files (core/network/checkpoint.py) on the real network: the RWKV-LM layout plus our
metadata, plain RWKV-LM files, refusal of files that would run code (weights_only) or are damaged."""
import os
import pickle

import pytest
import torch

from core.network.checkpoint import (META_KEY, CheckpointError, load_checkpoint, load_state_file, save_checkpoint,
                             save_state_file)
from tests.small_models import V, perturbed_model


def test_checkpoint_round_trip_keeps_layout_logits_and_meta(tmp_path):
    model = perturbed_model(seed=12, deep_embed=True)
    path = tmp_path / "m.pth"
    meta = {"tokenizer": {"version": 1, "tokens": ["a", "b"]}, "training": {"steps": 12}}
    save_checkpoint(model, path, meta)
    assert os.listdir(tmp_path) == ["m.pth"]  # the temporary file was renamed, none left

    raw = torch.load(path, weights_only=True)
    expected = {"emb.weight", "blocks.0.ln0.weight", "blocks.0.ln0.bias", "ln_out.weight", "ln_out.bias", "head.weight",
                "blocks.1.att.receptance.weight", "blocks.1.att.key.weight", "blocks.1.att.value.weight",
                "blocks.1.att.output.weight", "blocks.1.att.ln_x.weight", "blocks.1.att.ln_x.bias",
                "blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2", "blocks.1.att.r_k", "blocks.1.att.k_k",
                "blocks.1.att.k_a", "blocks.1.att.w0", "blocks.1.att.w1", "blocks.1.att.w2", "blocks.1.att.g1",
                "blocks.1.att.g2", "blocks.1.att.x_g", "blocks.1.ffn.x_k", "blocks.1.ffn.key.weight",
                "blocks.1.ffn.value.weight", "blocks.1.ln1.weight", "blocks.1.ln2.bias",
                "blocks.1.ffn.s_emb.weight", "blocks.1.ffn.s_emb_x.weight", "blocks.1.ffn.s1", "blocks.1.ffn.s2",
                "blocks.1.ffn.s0"}
    assert expected <= set(raw)
    assert set(raw) - set(model.state_dict()) == {META_KEY}
    assert raw["blocks.1.att.w1"].shape == (128, model.config.dim_w)  # LoRA stored [in, out]
    assert raw["blocks.1.ffn.key.weight"].shape == (512, 128)  # Linear stored [out, in]

    loaded, got_meta = load_checkpoint(path)
    assert loaded.config == model.config
    assert got_meta["tokenizer"] == meta["tokenizer"] and got_meta["training"] == meta["training"]
    assert got_meta["config"] == model.config.to_dict()
    idx = torch.randint(0, V, (2, 15), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        assert torch.equal(loaded(idx), model(idx))


def test_plain_rwkv_lm_file_loads_from_shapes_in_any_key_order(tmp_path):
    model = perturbed_model(seed=14, n_layer=3)
    sd = model.state_dict()
    keys = list(sd)
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(15)).tolist()
    # released files are bf16, with no metadata of ours
    torch.save({keys[i]: sd[keys[i]].to(torch.bfloat16) for i in order}, tmp_path / "plain.pth")
    loaded, meta = load_checkpoint(tmp_path / "plain.pth")
    assert meta == {}
    assert loaded.config == model.config
    assert loaded.head.weight.dtype == torch.float32
    assert torch.equal(loaded.head.weight, sd["head.weight"].to(torch.bfloat16).float())


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:  # unpickling this would run open(marker, "w")
        def __reduce__(self):
            return (open, (str(marker), "w"))

    sd = perturbed_model(seed=16).state_dict()
    sd["extra"] = Payload()
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save(sd, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_state_file(path)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "m.pth"
    save_checkpoint(perturbed_model(seed=17), path, {})
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pth")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="x070"):
        load_checkpoint(tmp_path / "other.pth")


def test_style_file_round_trip_and_base_model_check(tmp_path):
    model = perturbed_model(seed=18)
    cfg = model.config
    wkv = torch.randn(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size)
    path = tmp_path / "style.pth"
    save_state_file(path, wkv, model, {"name": "my style"})
    assert path.stat().st_size < 200_000
    got, meta = load_state_file(path, model)
    assert torch.equal(got, wkv) and meta["name"] == "my style"
    state = model.init_state(3, wkv=got)
    assert torch.equal(state.wkv[1][2], wkv[1])
    with pytest.raises(CheckpointError, match="another base model"):
        load_state_file(path, perturbed_model(seed=19))


def test_a_file_without_layer_0_value_residual_weights_still_loads(tmp_path):
    model = perturbed_model(seed=23)
    unused = {"blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"}
    sd = {k: v for k, v in model.state_dict().items() if k not in unused}
    torch.save(sd, tmp_path / "trimmed.pth")
    loaded, _ = load_checkpoint(tmp_path / "trimmed.pth")
    assert not loaded.blocks[0].att.v1.any()
    idx = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(24))
    with torch.no_grad():
        assert torch.equal(loaded(idx), model(idx))  # layer 0 never reads them

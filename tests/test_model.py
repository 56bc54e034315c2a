"""The real RWKV-7 network: parallel form == prefill + recurrent steps, batch independence,
checkpoint and style-file I/O, safe loading."""
import os
import pickle

import pytest
import torch

from core.model import (META_KEY, CheckpointError, ModelConfig, RWKV7, State, load_checkpoint, load_state_file,
                        save_checkpoint, save_state_file)

V = 97




def perturbed_model(seed=0, deep_embed=False, n_layer=2, n_embd=128) -> RWKV7:
    """A freshly initialised model with every parameter perturbed: zero-initialised weights
    (output, ffn.value, LoRA downs) would otherwise hide whole terms of the maths."""
    torch.manual_seed(seed)
    model = RWKV7(ModelConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=V, deep_embed=deep_embed))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def random_state(model: RWKV7, batch: int, seed=1) -> State:
    g = torch.Generator().manual_seed(seed)
    s = model.init_state(batch)
    for t in s.att_x + s.ffn_x + s.wkv:
        t.copy_(torch.randn(t.shape, generator=g))
    return s


def close(a, b, tol=1e-5):
    """Agreement to `tol` relative to the size of the values (logits here reach ~5)."""
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("deep_embed, dtype, tol", [(False, torch.float32, 1e-5), (True, torch.float32, 1e-5),
                                                    (False, torch.float64, 1e-12), (True, torch.float64, 1e-12)])
def test_parallel_equals_prefill_then_steps(deep_embed, dtype, tol):
    model = perturbed_model(deep_embed=deep_embed).to(dtype)
    B, T, split = 3, 24, 9
    idx = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(2))
    start = random_state(model, B)
    with torch.no_grad():
        full = model(idx, start)
    assert full.shape == (B, T, V)
    assert full.abs().max() > 1.0  # logits that actually vary, not a degenerate model

    last, state = model.prefill(idx[:, :split], start)
    close(last, full[:, split - 1], tol)
    logits_all, _ = model.prefill(idx[:, :split], start, full_output=True)
    close(logits_all, full[:, :split], tol)
    stepped = []
    for t in range(split, T):
        logits, state = model.step(idx[:, t], state)
        stepped.append(logits)
    assert stepped[0].dtype == dtype
    close(torch.stack(stepped, dim=1), full[:, split:], tol)


def test_steps_from_zero_state_match_parallel_and_leave_input_state_alone():
    model = perturbed_model(seed=3)
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full, final = model(idx, return_state=True)
    state = model.init_state(2)
    before = state.clone()
    logits, after_first = model.step(idx[:, 0], state)
    for a, b in zip(state.wkv + state.att_x, before.wkv + before.att_x):
        assert torch.equal(a, b)  # step returns a new state; the old one still branches
    state = after_first
    outs = [logits]
    for t in range(1, 12):
        logits, state = model.step(idx[:, t], state)
        outs.append(logits)
    close(torch.stack(outs, 1), full)
    for a, b in zip(state.wkv + state.att_x + state.ffn_x, final.wkv + final.att_x + final.ffn_x):
        close(a, b)


def test_a_sequence_ignores_the_rest_of_its_batch():
    model = perturbed_model(seed=5)
    g = torch.Generator().manual_seed(6)
    seq = torch.randint(0, V, (1, 20), generator=g)
    with torch.no_grad():
        alone = model(seq)
        # the same sequence next to two others, and right-padded to a longer batch
        batch = torch.randint(0, V, (3, 32), generator=g)
        batch[1, :20] = seq[0]
        in_batch = model(batch)
        batch[0] = torch.randint(0, V, (32,), generator=g)
        batch[1, 20:] = torch.randint(0, V, (12,), generator=g)
        changed = model(batch)
    close(in_batch[1, :20], alone[0])
    close(changed[1, :20], alone[0])


def test_step_streams_are_independent_and_state_helpers_agree():
    model = perturbed_model(seed=7)
    prompt = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(8))
    _, one = model.prefill(prompt)
    four = one.repeat(4)
    assert four.batch_size == 4
    logits, after = model.step(torch.tensor([5, 5, 9, 5]), four)
    close(logits[0], logits[1])
    close(logits[0], logits[3])
    assert (logits[0] - logits[2]).abs().max() > 1e-3
    picked = after.select([2, 0])
    assert picked.batch_size == 2
    close(picked.wkv[1][0], after.wkv[1][2])
    nxt, _ = model.step(torch.tensor([3, 3]), picked)
    nxt_ref, _ = model.step(torch.tensor([3]), after.select([2]))
    close(nxt[0], nxt_ref[0])
    both = State.cat([after.select([0]), after.select([2])])
    close(both.att_x[0], picked.att_x[0].flip(0))


def test_step_sees_weight_updates():
    model = perturbed_model(seed=9)
    tok = torch.tensor([4])
    before, _ = model.step(tok, model.init_state(1))
    with torch.no_grad():
        model.head.weight.mul_(2.0)  # in place, as an optimizer step would do
    after, _ = model.step(tok, model.init_state(1))
    close(after, before * 2.0)


def test_initial_state_gets_gradients_for_state_tuning():
    model = perturbed_model(seed=10)
    cfg = model.config
    style = torch.zeros(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size, requires_grad=True)
    idx = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(11))
    logits = model(idx, model.init_state(2, wkv=style), backend="train")  # the model is in eval() mode
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), idx.roll(-1, 1).reshape(-1)).backward()
    assert torch.isfinite(style.grad).all()
    assert (style.grad.abs().sum(dim=(1, 2, 3)) > 0).all()  # every layer's state is learned


def test_the_backend_argument_not_the_grad_mode_picks_the_code():
    """The same backend gives the same bits with gradients on or off; train()/eval() set the default;
    the forward-only backend refuses to run where gradients are wanted (it would give none)."""
    model = perturbed_model(seed=30)
    idx = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(31))
    runs = {}
    for backend in ("train", "prefill"):
        with torch.no_grad():
            off = model(idx, backend=backend)
        with torch.enable_grad():
            on = model(idx, backend=backend)
        assert torch.equal(on, off), backend
        runs[backend] = off
    assert not torch.equal(runs["train"], runs["prefill"])  # two codes (chunked, C++), equal up to rounding
    close(runs["train"], runs["prefill"])
    with torch.no_grad():
        assert torch.equal(model.eval()(idx), runs["prefill"])
        assert torch.equal(model.train()(idx), runs["train"])
        assert torch.equal(model.prefill(idx, full_output=True)[0], runs["prefill"])
    model.eval()
    start = torch.zeros(model.config.n_layer, model.config.n_head, 64, 64, requires_grad=True)
    logits = model(idx, model.init_state(2, wkv=start))
    with pytest.raises(RuntimeError, match="forward only.*backend='train'"):
        logits.sum().backward()
    with pytest.raises(ValueError, match="backend must be one of"):
        model(idx, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        model.step(idx[:, 0], model.init_state(2), backend="prefill")


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


def test_from_scratch_initialisation_follows_the_rwkv_lm_recipe():
    torch.manual_seed(22)
    L = 4
    model = RWKV7(ModelConfig(n_layer=L, n_embd=128, vocab_size=300))
    assert model.emb.weight.abs().max() <= 1e-4
    head = model.head.weight  # [V, C] orthogonal columns, gain 0.5 * sqrt(V / C)
    close(head.t() @ head, torch.eye(128) * 0.25 * 300 / 128, 1e-4)
    for i, blk in enumerate(model.blocks):
        att, ffn = blk.att, blk.ffn
        for zeroed in (att.output.weight, ffn.value.weight, att.w1, att.a1, att.v1, att.g1):
            assert not zeroed.any()
        w2 = att.w2  # [Dw, C]: orthonormal rows scaled by 0.1
        close(w2 @ w2.t(), torch.eye(w2.shape[0]) * 0.01, 1e-4)
        close(att.ln_x.weight, torch.full((128,), ((i + 1) / L) ** 0.7))
        decay = torch.exp(-0.606531 * torch.sigmoid(att.w0))
        assert 0.545 < decay.min() and decay.max() < 1.0 and decay.max() - decay.min() > 0.3
        assert (att.k_a == 1.02).all() and (att.r_k == -0.04).all()
        for mu in (att.x_r, att.x_w, att.x_k, att.x_v, att.x_a, att.x_g, ffn.x_k):
            assert 0.0 <= mu.min() and mu.max() <= 1.0
            assert mu[0, 0, 0] == 1.0  # channel 0 takes the previous token entirely


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

"""The real RWKV-7 network: parallel form == prefill + recurrent steps, batch independence, gradients
into the initial state, the backend argument, the from-scratch initialisation."""
import pytest
import torch

from core.network.model import ModelConfig, RWKV7, State
from core.network.step import step_tokens
from tests.small_models import V, perturbed_model, random_state


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
        logits, state = step_tokens(model, idx[:, t], state)
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
    logits, after_first = step_tokens(model, idx[:, 0], state)
    for a, b in zip(state.wkv + state.att_x, before.wkv + before.att_x):
        assert torch.equal(a, b)  # step returns a new state; the old one still branches
    state = after_first
    outs = [logits]
    for t in range(1, 12):
        logits, state = step_tokens(model, idx[:, t], state)
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
    logits, after = step_tokens(model, torch.tensor([5, 5, 9, 5]), four)
    close(logits[0], logits[1])
    close(logits[0], logits[3])
    assert (logits[0] - logits[2]).abs().max() > 1e-3
    picked = after.select([2, 0])
    assert picked.batch_size == 2
    close(picked.wkv[1][0], after.wkv[1][2])
    nxt, _ = step_tokens(model, torch.tensor([3, 3]), picked)
    nxt_ref, _ = step_tokens(model, torch.tensor([3]), after.select([2]))
    close(nxt[0], nxt_ref[0])
    both = State.cat([after.select([0]), after.select([2])])
    close(both.att_x[0], picked.att_x[0].flip(0))


def test_step_sees_weight_updates():
    model = perturbed_model(seed=9)
    tok = torch.tensor([4])
    before, _ = step_tokens(model, tok, model.init_state(1))
    with torch.no_grad():
        model.head.weight.mul_(2.0)  # in place, as an optimizer step would do
    after, _ = step_tokens(model, tok, model.init_state(1))
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
    # on the CPU in float32 both run the C++ loop forward (training adds what its backward needs), so
    # training and generation compute the same numbers
    assert torch.equal(runs["train"], runs["prefill"])
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
        step_tokens(model, idx[:, 0], model.init_state(2), backend="prefill")


def test_dropout_acts_in_training_passes_only():
    model = perturbed_model(seed=32)
    idx = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(33))
    with torch.no_grad():
        plain_train, plain_eval = model.train()(idx), model.eval()(idx)
        model.dropout = 0.3
        torch.manual_seed(0)
        a = model.train()(idx)
        torch.manual_seed(1)
        b = model(idx)
        assert not torch.equal(a, b) and not torch.equal(a, plain_train)
        torch.manual_seed(0)
        assert torch.equal(model(idx), a)  # seeded: a resumed run draws the same masks
        assert torch.equal(model.eval()(idx), plain_eval)  # validation and generation never drop
        assert torch.equal(model(idx, backend="train"), plain_train)  # a pass in eval mode neither


def test_dropout_drops_its_share_and_keeps_the_mean():
    from core.network.model import dropout
    x = torch.full((3, 1001), 2.0)  # an element count that 4 does not divide
    torch.manual_seed(5)
    y = dropout(x, 0.2)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 51 / 256) < 0.02  # 0.2 rounds to 51/256
    assert torch.allclose(y.unique(), torch.tensor([0.0, 2.0 * 256 / 205]))  # the kept are scaled: the mean stays
    assert abs(y.mean().item() - 2.0) < 0.1
    assert torch.equal(dropout(x, 0.001), x)  # below 1/512: nothing to drop
    leaf = x.clone().requires_grad_()
    dropout(leaf, 0.5).sum().backward()
    assert set(leaf.grad.unique().tolist()) == {0.0, 2.0}


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

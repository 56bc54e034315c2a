"""The real model learns a task that needs memory across many tokens, which only the WKV
state can provide (token shift reaches one token back): copy a random sequence after a
delimiter. And the gradient really flows through the WKV operator's inputs."""
import math
import time

import torch
import torch.nn.functional as F

from core.network.model import ModelConfig, RWKV7
from core.network.step import step_tokens

N_SYMBOLS, LENGTH = 8, 8
DELIM = N_SYMBOLS  # symbols are 0..7, the delimiter 8
VOCAB = N_SYMBOLS + 1


def copy_batch(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs `s DELIM s[:-1]`, targets the next token, counted only where the copy is predicted."""
    s = torch.randint(0, N_SYMBOLS, (batch, LENGTH), generator=gen)
    seq = torch.cat([s, torch.full((batch, 1), DELIM), s], dim=1)
    inputs, targets = seq[:, :-1], seq[:, 1:].clone()
    targets[:, :LENGTH] = -100  # the first half is random: nothing to learn there
    return inputs, targets




def copy_loss(model, inputs, targets):
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)


def test_gradients_reach_every_wkv_input_and_the_initial_state():
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=64, vocab_size=VOCAB, head_size=32))
    with torch.no_grad():
        for blk in model.blocks:  # the recipe zeroes these; open the paths so grads can reach all
            blk.att.output.weight.normal_(0, 0.1)
            blk.ffn.value.weight.normal_(0, 0.1)
    cfg = model.config
    start = torch.zeros(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size, requires_grad=True)
    inputs, targets = copy_batch(4, torch.Generator().manual_seed(1))
    logits = model(inputs, model.init_state(4, wkv=start))
    F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100).backward()
    for i, blk in enumerate(model.blocks):
        att = blk.att
        # r, k, v, decay (w0, w1), in-context rate (a0, a1): each feeds the WKV operator
        for name in ("receptance.weight", "key.weight", "value.weight", "w0", "w1", "a0", "a1", "k_k"):
            grad = att.get_parameter(name).grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (i, name)
    assert start.grad.abs().sum(dim=(1, 2, 3)).min() > 0


def test_learns_to_copy_through_the_state():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=64, vocab_size=VOCAB, head_size=32))
    steps = 300
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, betas=(0.9, 0.99), weight_decay=0.0)
    warmup_then_cosine = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    t0 = time.perf_counter()
    for step in range(steps):
        loss = copy_loss(model, *copy_batch(32, gen))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        warmup_then_cosine.step()
        if step == 0:
            first = loss.item()
    model.eval()
    with torch.no_grad():
        held_out = copy_loss(model, *copy_batch(256, torch.Generator().manual_seed(123))).item()
    print(f"copy loss {first:.3f} -> {held_out:.4f} in {steps} steps, {time.perf_counter() - t0:.1f} s")
    assert first > 1.5  # chance level is ln 8 = 2.08
    assert held_out < 0.05

    # New sequences, the copy generated greedily token by token through the recurrent state.
    inputs, _ = copy_batch(32, torch.Generator().manual_seed(7))
    _, state = model.prefill(inputs[:, :LENGTH])  # the sequence; the delimiter goes in by step
    tok = inputs[:, LENGTH]
    copied = []
    for _ in range(LENGTH):
        logits, state = step_tokens(model, tok, state)
        tok = logits.argmax(-1)
        copied.append(tok)
    accuracy = (torch.stack(copied, 1) == inputs[:, :LENGTH]).float().mean().item()
    assert accuracy >= 0.98

"""Small real RWKV-7 models that tests build in memory."""
from __future__ import annotations

import torch

from core.network.model import ModelConfig, RWKV7, State
from core.network.step import CppStepper, TorchStepper, prepare, step_tokens
from core.network.style import Style
from core.training.style_tuning import small_parameter_names
from core.training.train_config import TrainConfig


def odd_sized_model(seed: int = 0) -> RWKV7:
    """Head size 32, three heads, low-rank sizes that are not multiples of the vector width, weights moved off
    their initialisation (which zeroes some projections), in eval mode."""
    torch.manual_seed(seed)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=96, vocab_size=53, head_size=32, dim_w=13, dim_a=7, dim_v=5, dim_g=19))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


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


def run_both(model, tokens, state, offset=None):
    """Step through tokens [B,T] with the fused step and with the torch-op step from `state` (with a style's
    state `offset`, if given); returns the logits [B,T,V] and final states of each."""
    results = []
    for backend in ("step-cpp", "step-torch"):
        s, outs = state, []
        for t in range(tokens.shape[1]):
            logits, s = step_tokens(model, tokens[:, t], s, backend, offset=offset)
            outs.append(logits)
        assert isinstance(prepare(model, backend, offset), CppStepper if backend == "step-cpp" else TorchStepper)
        results.append((torch.stack(outs, 1), s))
    return results


def run_with_grads(op, tensors, seed=1):
    """Output, final state and the gradient of every input of a random linear loss on both outputs."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y, s = op(*leaves)
    g = torch.Generator().manual_seed(seed)
    # Drawn in float64 then cast, so float32 and float64 runs get the same loss.
    y_weight = torch.randn(y.shape, dtype=torch.float64, generator=g).to(y.dtype)
    s_weight = torch.randn(s.shape, dtype=torch.float64, generator=g).to(s.dtype)
    ((y * y_weight).sum() + (s * s_weight).sum()).backward()
    return y.detach(), s.detach(), [leaf.grad for leaf in leaves]


def random_style(model: RWKV7, seed: int = 0, parts=("lora", "offset", "bias", "state"), offset_rank: int = 0,
                 lora_rank: int = 4, size: float = 0.05) -> Style:
    """A style with every part filled with small random values (a trained one's shapes, not its values)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    L, H, N = cfg.n_layer, cfg.n_head, cfg.head_size

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * size

    style = Style(meta={"base_config": cfg.to_dict()})
    if "state" in parts:
        style.state = rnd(L, H, N, N) * 10
    if "offset" in parts:
        if offset_rank:
            style.offset_u, style.offset_v = rnd(L, H, N, offset_rank) * 3, rnd(L, H, offset_rank, N) * 3
        else:
            style.offset = rnd(L, H, N, N)
    if "bias" in parts:
        style.deltas = {n: rnd(*model.get_parameter(n).shape) for n in small_parameter_names(model)}
    if "lora" in parts:
        for name, p in model.named_parameters():
            if name.endswith(("att.receptance.weight", "att.output.weight", "ffn.key.weight")):
                style.lora[name] = (rnd(lora_rank, p.shape[1]), rnd(p.shape[0], lora_rank))
    return style


def style_config(folder, base, out, **kw) -> TrainConfig:
    return TrainConfig(data=str(folder), out=str(out), base=str(base), mode="style", ctx_len=32, batch_size=2,
                       steps=8, checkpoint_every=2, eval_every=2, style_rank=2, offset_rank=4, seed=5, workers=1,
                       **kw)

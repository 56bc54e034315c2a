"""Small real RWKV-7 models that tests build in memory."""
from __future__ import annotations

import torch

from core.model import ModelConfig, RWKV7


def odd_sized_model(seed: int = 0) -> RWKV7:
    """Head size 32, three heads, low-rank sizes that are not multiples of the vector width, weights moved off
    their initialisation (which zeroes some projections), in eval mode."""
    torch.manual_seed(seed)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=96, vocab_size=53, head_size=32, dim_w=13, dim_a=7, dim_v=5, dim_g=19))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()

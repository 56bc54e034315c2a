"""A causal Transformer baseline (pre-LayerNorm, learned positions, GELU MLP) and its training loop.

The loop mirrors core.training.train's for a fair comparison: the same training windows (core.training.data.make_windows:
pieces cut at bars with the tokenizer's header), the same examples and loss mask (build_example, collate),
the loss summed over a batch's scored tokens divided by their count, AdamW with weight decay on 2-D
weights only, gradient clipping, and core.training.train_schedule's warm-up + cosine schedule (and its time budget).
save_transformer / load_transformer keep a trained baseline (its config and weights) for later scoring.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..training import data as D


@dataclass
class TransformerConfig:
    vocab_size: int
    n_layer: int
    n_embd: int
    ctx_len: int  # longest input; the position table is padded up to the training pad multiple
    head_size: int = 64
    mlp_ratio: int = 4

    @property
    def n_head(self) -> int:
        return max(1, self.n_embd // self.head_size)

    @property
    def positions(self) -> int:
        return D.padded_length(self.ctx_len)


class _Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        c = cfg.n_embd
        self.n_head = cfg.n_head
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.fc = nn.Linear(c, cfg.mlp_ratio * c)
        self.out = nn.Linear(cfg.mlp_ratio * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CausalTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.positions, cfg.n_embd)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """GPT-2's recipe: N(0, 0.02), residual output projections scaled down by sqrt(2 * layers)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith(("proj.weight", "out.weight")) \
                    else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.config.positions:
            raise ValueError(f"{T} tokens exceed the {self.config.positions} learned positions")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def save_transformer(model: CausalTransformer, path, **info) -> None:
    """Config, weights and `info` (learning rate, steps...) in one file, written atomically."""
    from ..atomic import atomic_write
    with atomic_write(path) as f:
        torch.save({"config": asdict(model.config), "state_dict": model.state_dict(), **info}, f)


def load_transformer(path, device: str | torch.device = "cpu") -> tuple[CausalTransformer, dict]:
    """The baseline saved by save_transformer, in eval mode, and the file's other entries."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a saved Transformer baseline (no config and weights)")
    model = CausalTransformer(TransformerConfig(**ckpt.pop("config")))
    model.load_state_dict(ckpt.pop("state_dict"))
    return model.to(device).eval(), ckpt


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_config(target_params: int, vocab_size: int, n_embd: int, ctx_len: int,
                   max_layers: int = 48) -> TransformerConfig:
    """The Transformer of width n_embd whose parameter count is nearest to target_params."""
    def count(layers: int) -> int:
        c, m = n_embd, 4
        per_layer = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (m * c * c + m * c) + (m * c * c + c)
        return 2 * vocab_size * c + D.padded_length(ctx_len) * c + 2 * c + layers * per_layer
    layers = min(range(1, max_layers + 1), key=lambda n: abs(count(n) - target_params))
    return TransformerConfig(vocab_size, layers, n_embd, ctx_len)


@dataclass
class Schedule:
    """What the RWKV base model's training used (its resume.pt config, else the eval command's flags)."""
    steps: int
    batch_size: int
    ctx_len: int
    lr: float = 1e-3
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    seed: int = 0
    time_budget_s: float | None = None  # train this long instead (steps: at most that many), fitted as RWKV's runs are

    def to_dict(self) -> dict:
        return asdict(self)


def train_causal_lm(model: nn.Module, pieces: Sequence[D.Piece], tokenizer, schedule: Schedule,
                    device: str | torch.device = "cpu",
                    log: Callable[[int, float], None] | None = None) -> dict:
    """Train `model` (idx [B,T] -> logits) on the pieces' windows for schedule.steps steps, or for
    schedule.time_budget_s seconds: then the length and the cosine are fitted to the first steps' speed by
    the RWKV loop's own BudgetFit, so that both architectures get a budget the same way.
    Returns {"steps", "tokens" (scored tokens seen), "seconds", "last_loss"}."""
    from ..training.train_config import TrainConfig
    from ..training.train_schedule import BudgetFit, Schedule as RunSchedule
    s = schedule
    windows = D.make_windows(pieces, tokenizer, s.ctx_len)
    if not windows:
        raise ValueError("no training windows")
    per_epoch = max(1, len(windows) // s.batch_size)
    plan_cfg = TrainConfig(data="", out="", batch_size=s.batch_size, warmup_steps=s.warmup_steps,
                           steps=s.steps, time_budget_s=s.time_budget_s)
    plan = RunSchedule.plan(plan_cfg, per_epoch)  # warm-up: warmup_steps, else the RWKV loop's default
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=s.lr, betas=(s.beta1, s.beta2))
    model.train().to(device)
    gen = torch.Generator().manual_seed(s.seed)
    order: list[int] = []
    tokens_seen, last_loss, t0 = 0, float("nan"), time.perf_counter()
    budget = BudgetFit(plan_cfg, time.monotonic(), 0, 0, per_epoch) if s.time_budget_s else None
    step = 0
    while step < plan.stop_at:
        if len(order) < s.batch_size:  # a fresh permutation per epoch
            order += torch.randperm(len(windows), generator=gen).tolist()
        batch, order = order[:s.batch_size], order[s.batch_size:]
        examples = []
        for i in batch:
            tokens, _head = D.window_tokens(pieces, windows[i])
            examples.append(D.build_example(tokens, s.ctx_len, 0, tokenizer.pad_id))
        inputs, targets, mask = (t.to(device) for t in D.collate(examples, tokenizer.pad_id))
        count = mask.sum().clamp_min(1.0)
        for g in opt.param_groups:
            g["lr"] = plan.lr(step, s.lr, s.min_lr_ratio)
        logits = model(inputs)
        nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        loss = (nll * mask.flatten()).sum() / count
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens_seen += int(count.item())
        last_loss = float(loss.item())
        step += 1
        if budget:
            budget.after_step(plan, step, time.monotonic())
        if log:
            log(step, last_loss)
    model.eval()
    return {"steps": step, "tokens": tokens_seen, "seconds": time.perf_counter() - t0, "last_loss": last_loss}

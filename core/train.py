"""The training loop: pretraining and fine-tuning (full, LoRA, style and state tuning) with progress events,
checkpoints and exact resume.

Here: the learning-rate schedule, DDP set-up, the loop itself (`run_training(config, emit, should_stop)`, in
this process), its checkpoints, and its torchrun entry: under `torchrun ... -m core.train` each rank takes a
fixed slice of every global batch and gradients are summed, so N processes compute what one process computes
on the whole batch. Elsewhere: the model a run trains and how its result file is written (core/train_model.py),
a run's settings, events and errors (core/train_config.py), its command-line options (core/train_options.py),
a run in a child process (core/train_job.py), scoring whole files with a trained model
(core/evaluate/files.py).

Output folder: resume.pt (exact resume), model.pth (full/LoRA; LoRA merged) or style.pth (style, and its
variant state: see core/style.py), train_log.jsonl (one event per line), scan_report.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core import augment as A
from core import data as D
from core.atomic import atomic_write
from core.evaluate.bits import bits_per_note, nats_to_bits
from core.keys import key_of_histogram
from core.train_config import (DEFAULT_LR, LOG_FILE, MODES, RESUME_FILE, SCAN_FILE, STYLE_LARGE_FOLDER, TrainConfig,
                                TrainEvent, TrainingError)
from core.train_model import base_tokenizer, build_model, export_result, param_groups, wrap, write_memory_style
from core.train_options import add_train_arguments, config_from_args

RESUME_FORMAT = "rwkv-music-resume/1"


# --- schedule and data bookkeeping ---------------------------------------------------------------
# steps at which a time budget (re)sets the run's length; the late one because the first hundred steps ran
# slower than the rest (600 s style runs ended after 554 s)
BUDGET_FIT_STEPS = (3, 10, 30, 100, 300)
UNFITTED_STEPS = 10**9  # a time-budget run's length until its first steps are timed


def lr_at(step: int, total: int, warmup: int, peak: float, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine down to peak * min_ratio at `total`. `step` counts from 0."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _data_fingerprint(pieces) -> str:
    import hashlib
    return hashlib.sha1("\n".join(f"{p.path}:{p.digest}" for p in pieces).encode()).hexdigest()[:16]


def note_token_table(tokenizer) -> np.ndarray:
    """Bool per token id: True for the one token every note has exactly once (its pitch)."""
    is_note = np.zeros(tokenizer.vocab_size, dtype=bool)
    is_note[list(tokenizer.ids_of_kind("pitch"))] = True
    return is_note


# --- distributed -------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env() -> bool:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


# --- the loop ----------------------------------------------------------------------------------
class _Batches:
    """Deterministic order of training windows from (seed, epoch). Each epoch shuffles the windows,
    then sorts each run of LENGTH_GROUP batches' worth by length and deals them out as batches, whose
    order is shuffled again: a batch pads to its longest window, so windows of like length together
    waste little (a folder of short tunes padded a quarter of each random batch). A batch is a position
    (epoch, index); rank r of w takes the elements r, r+w, ... of each global batch."""
    LENGTH_GROUP = 16

    def __init__(self, lengths: Sequence[int], batch: int, seed: int) -> None:
        self.lengths, self.n, self.batch, self.seed = list(lengths), len(lengths), batch, seed
        self.per_epoch = max(1, self.n // batch)
        self._epoch, self._order = -1, []

    def indices(self, epoch: int, index: int) -> list[int]:
        if epoch != self._epoch:
            self._order, self._epoch = self._deal(epoch), epoch
        return self._order[index]

    def _deal(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        order = [perm[k % self.n] for k in range(self.per_epoch * self.batch)]  # fewer windows than a batch: repeat
        span = self.batch * self.LENGTH_GROUP
        batches = []
        for start in range(0, len(order), span):
            group = sorted(order[start:start + span], key=self.lengths.__getitem__)
            batches += [group[j:j + self.batch] for j in range(0, len(group), self.batch)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


class _Trainer:
    def __init__(self, config: TrainConfig, emit: Callable[[TrainEvent], None],
                 should_stop: Callable[[], bool]) -> None:
        self.config, self._emit_raw, self.should_stop = config, emit, should_stop
        self.rank, self.world = _dist_info()
        self.out = Path(config.out)
        if self.config.mode not in MODES:
            raise TrainingError(f"unknown mode {config.mode!r}; one of {', '.join(MODES)}")
        if config.batch_size % self.world:
            raise TrainingError(f"batch {config.batch_size} does not divide over {self.world} processes")
        if config.ctx_len < 16:
            raise TrainingError("context length must be at least 16 tokens")
        if config.bptt is not None:
            if config.bptt < D.PAD_MULTIPLE or config.bptt % D.PAD_MULTIPLE:
                raise TrainingError(f"--bptt must be a multiple of {D.PAD_MULTIPLE} tokens, not {config.bptt}")
            if config.mode not in ("full", "lora"):
                raise TrainingError(f"--bptt trains the whole network (full or lora mode), not {config.mode}")
            if self.world > 1:  # ranks would run different numbers of spans, each a backward pass of its own
                raise TrainingError("--bptt runs in one process, not under torchrun")
        for name in ("key_augment", "crop_share", "average_from"):
            value = config.resolved(name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise TrainingError(f"{name.replace('_', ' ')} is a fraction from 0 to 1, not {value:g}")

    def emit(self, event: TrainEvent) -> None:
        if self.rank != 0:
            return
        with open(self.out / LOG_FILE, "a") as f:
            f.write(json.dumps({"t": round(time.time(), 3), **event.to_dict()}) + "\n")
        self._emit_raw(event)

    # set-up
    def _device(self) -> torch.device:
        want = self.config.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise TrainingError("CUDA was asked for but no CUDA GPU is available")
            if self.world > 1:
                return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device(want)

    def _scan(self, tokenizer):
        import torch.distributed as dist
        cfg = self.config
        cache = cfg.cache_dir or str(self.out / "token_cache")
        if self.world > 1 and self.rank != 0:
            dist.barrier()  # rank 0 fills the cache first
        pieces, report = D.scan_folder(cfg.data, tokenizer, cache_dir=cache, workers=cfg.workers)
        if self.world > 1 and self.rank == 0:
            dist.barrier()
        return pieces, report

    def run(self) -> dict:
        self._prepare()
        cfg, device = self.config, self.device
        log_every = cfg.log_every or (10 if device.type == "cuda" else 1)
        self._acc_loss = torch.zeros((), device=device)
        self._acc_bad = torch.zeros((), device=device)
        self._acc_steps = self._acc_tokens = 0
        self._t_start = self._t_log = time.monotonic()
        self._step_start = self.step
        self.emit(TrainEvent("step", step=self.step, total_steps=self.total, message=self.notice + (
            f"{len(self.train_pieces)} train / {len(self.val_pieces)} validation pieces, "
            f"{len(self.train_windows)} windows of {cfg.ctx_len} tokens, {self.total} steps of batch {cfg.batch_size}, "
            f"learning rate {self.peak_lr:g}")))
        if self.memory_pieces and self.rank == 0 and not cfg.resume:
            self._write_memory()
        if cfg.keep_best and self.val_windows and self.step == 0:
            self._validate()  # the starting point (a fine-tune: the base model) is a candidate too
        try:
            while self.step < self.stop_at:
                if self.should_stop():
                    paths = self._checkpoint()
                    self.emit(TrainEvent("cancelled", step=self.step, total_steps=self.total, paths=paths,
                                         message=f"stopped at step {self.step}; resume with --resume"))
                    return paths
                self._train_step()
                if cfg.time_budget_s and (not cfg.resume or self._unfitted):
                    self._fit_schedule_to_budget(cfg.time_budget_s)
                if self.step % log_every == 0 or self.step == self.stop_at:
                    self._log_progress()
                if self.val_windows and (self.step % self._eval_interval() == 0 or self.step == self.total):
                    self._validate()
                if self.step % cfg.checkpoint_every == 0 and self.step < self.stop_at:
                    self._checkpoint()
        except torch.OutOfMemoryError:
            smaller = max(1, cfg.batch_size // 2)
            raise TrainingError(f"out of GPU memory with batch {cfg.batch_size} x {cfg.ctx_len} tokens; try "
                                + (f"--batch {smaller}" if smaller < cfg.batch_size else "a shorter --ctx")) from None

        paths = {**self._checkpoint(), "log": str(self.out / LOG_FILE), "scan_report": str(self.out / SCAN_FILE)}
        finished = self.step >= self.total
        kept = ""
        if self.best and self.best["step"] == 0:
            kept = (" (no step did better than the start on the validation pieces, so the result is the starting "
                    "point; more pieces or a lower --lr may help)")
        elif self.best and self.best["step"] != self.step:
            kept = f" (the weights of step {self.best['step']}, the lowest validation loss)"
        self.emit(TrainEvent("done" if finished else "cancelled", step=self.step, total_steps=self.total, paths=paths,
                             **self.last_val, message=(f"finished: {paths.get('result', '')}{kept}" if finished
                                                       else f"paused at step {self.step}; resume with --resume")))
        return paths

    def _write_memory(self) -> None:
        """The style's first result, in seconds: the folder's memory alone, while the adapters train."""
        t0 = time.monotonic()
        path = write_memory_style(self.config, self.memory_pieces, self.tokenizer)
        self.emit(TrainEvent("memory", step=self.step, total_steps=self.total, paths={"result": str(path)},
                             message=f"memory: learnt {len(self.memory_pieces)} pieces in "
                                     f"{time.monotonic() - self._t_start:.1f} s (written in "
                                     f"{time.monotonic() - t0:.1f} s); the style trains on"))

    def _prepare(self) -> None:
        """Data, model, optimizer and position: fresh, or exactly as the resume checkpoint left them. The
        order of the steps is part of exact resume (seeds, then weights, then the checkpoint's RNG state)."""
        cfg = self.config
        if not Path(cfg.data).exists():
            raise TrainingError(f"no such folder: {cfg.data}")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainingError(f"cannot create the output folder {self.out}: {e.strerror or e}") from None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = self._device()
        resume = self._read_resume() if cfg.resume else None
        self.tokenizer = self._tokenizer(resume)
        self._prepare_data()
        base_meta = self._prepare_model(resume)
        self._plan_schedule(resume)
        self._prepare_optimizer()
        self._restore_position(resume)
        self.meta = {**base_meta, "tokenizer": self.tokenizer.to_dict(),
                     "training": {"mode": cfg.mode, "base": cfg.base, "data": str(cfg.data), "ctx_len": cfg.ctx_len,
                                  "bptt": cfg.bptt}}
        self.last_val: dict = {}
        self._eval_s = 0.0  # seconds spent validating, kept apart from the steps' own time

    def _tokenizer(self, resume: dict | None):
        from core.tokenizer import Tokenizer
        if resume:
            return Tokenizer.from_dict(resume["tokenizer"])
        if self.config.base:
            return base_tokenizer(self.config.base)  # a fine-tune keeps its base model's vocabulary (v1 stays v1)
        return Tokenizer()

    def _prepare_data(self) -> None:
        """Scan the folder (scan_report.json, a "scan" event), split the pieces into training and validation
        and cut both into windows."""
        cfg, tokenizer = self.config, self.tokenizer
        pieces, report = self._scan(tokenizer)
        if self.rank == 0:
            (self.out / SCAN_FILE).write_text(json.dumps(report.to_dict(), indent=1))
        self.emit(TrainEvent("scan", message=report.summary(), report=report.to_dict(),
                             paths={"scan_report": str(self.out / SCAN_FILE)}))
        if not pieces:
            raise TrainingError(f"no usable MIDI file in {cfg.data} ({len(report.skipped)} skipped)")
        # a style keeps every piece of the folder in its memory (validation pieces too: it is the user's music)
        self.memory_pieces = [p.tokens for p in pieces] if cfg.mode == "style" else None
        train, val = D.split_pieces(pieces, cfg.val_fraction, cfg.seed)
        self.train_pieces, self.val_pieces = D.cap_validation(train, val, tokenizer, cfg.ctx_len,
                                                              cfg.max_eval_batches * cfg.batch_size, cfg.seed)
        self.crop_share, self.key_share = cfg.resolved("crop_share"), cfg.resolved("key_augment")
        # the Bars (index, restated header) a crop may start at, and each piece's key (None: no key)
        self.piece_bars = ([tokenizer.bar_headers([int(t) for t in p.tokens]) for p in self.train_pieces]
                           if self.crop_share > 0 else [])
        self.train_windows = D.make_windows(self.train_pieces, tokenizer, cfg.ctx_len, self.piece_bars or None)
        self.piece_keys = ([key_of_histogram(A.pitch_class_counts(p.tokens, tokenizer)) for p in self.train_pieces]
                           if self.key_share > 0 else [])
        self.val_windows = D.make_windows(self.val_pieces, tokenizer, cfg.ctx_len)
        self.is_note = note_token_table(tokenizer)
        self.fingerprint = _data_fingerprint(self.train_pieces)

    def _prepare_model(self, resume: dict | None) -> dict:
        """The module the run trains, on its device, with the checkpoint's weights when resuming, and the
        DDP wrapper over it. Returns the base model's metadata."""
        cfg = self.config
        torch.manual_seed(cfg.seed)  # the same initial weights in every process and every run
        random.seed(cfg.seed)
        model, base_meta = build_model(cfg, self.tokenizer)
        self.module = wrap(model, cfg).to(self.device)
        if resume:  # before DDP, which starts every rank from rank 0's parameters
            self.module.load_state_dict(resume["module"])
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.forward_module = self.module
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.forward_module = DDP(self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return base_meta

    def _plan_schedule(self, resume: dict | None) -> None:
        """The batch order, the run's length (steps; where it pauses) and the warm-up."""
        cfg = self.config
        self.batches = _Batches([w.n_tokens for w in self.train_windows], cfg.batch_size, cfg.seed)
        if cfg.steps is not None:
            self.total = int(cfg.steps)
        elif resume and cfg.epochs is None:
            self.total = int(resume["total_steps"])  # a bare --resume keeps the run's length and schedule
        else:
            self.total = max(1, math.ceil((cfg.epochs if cfg.epochs is not None else 1.0) * self.batches.per_epoch))
            if cfg.time_budget_s and cfg.epochs is None:
                self.total = UNFITTED_STEPS  # set from the first steps' time (_fit_schedule_to_budget)
        # a budget run paused before its first steps were timed has no length yet: it fits one when resumed
        self._unfitted = self.total >= UNFITTED_STEPS
        self.stop_at = min(self.total, cfg.stop_at_step) if cfg.stop_at_step is not None else self.total
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(100, self.total // 20)

    def _prepare_optimizer(self) -> None:
        """AdamW (fused) over the trainable parameters at the run's peak learning rate."""
        cfg = self.config
        self.peak_lr = cfg.lr if cfg.lr is not None else DEFAULT_LR["scratch" if not cfg.base else cfg.mode]
        tokens, factor = STYLE_LARGE_FOLDER
        if cfg.lr is None and cfg.mode == "style" and sum(len(p.tokens) for p in self.train_pieces) >= tokens:
            self.peak_lr *= factor
        # a style's parts each have their own rate, all scaled by --lr / the mode's default
        if hasattr(self.module, "param_groups"):
            # state mode: its one part at the mode's own rate (2e-2, or --lr), as it always was
            reference = self.module.PART_LR["state"] if cfg.mode == "state" else DEFAULT_LR[cfg.mode]
            groups = self.module.param_groups(cfg.weight_decay, reference)
        else:
            groups = param_groups(self.module, cfg.weight_decay)
        self.opt = torch.optim.AdamW(groups, lr=self.peak_lr, betas=(cfg.beta1, cfg.beta2), fused=True)
        self.found_inf = torch.zeros((), device=self.device)

    def _restore_position(self, resume: dict | None) -> None:
        """Step 0, or the checkpoint's step, batch position, optimizer state, random generators and best
        validation point."""
        self.step = self.epoch = self.index = self.bad_steps = 0
        self.notice = ""
        if resume:
            if resume.get("data") != self.fingerprint:
                self.notice = "the folder changed since the checkpoint: the rest of the run sees another data order. "
            self.opt.load_state_dict(resume["optimizer"])
            self.step, self.epoch, self.index = resume["step"], resume["epoch"], resume["index"]
            self.bad_steps = resume["bad_steps"]
            torch.set_rng_state(resume["rng"]["torch"])
            random.setstate(_to_tuple(resume["rng"]["python"]))
            if torch.cuda.is_available() and resume["rng"].get("cuda"):
                torch.cuda.set_rng_state_all(resume["rng"]["cuda"])
        # a run resumed with --keep-last exports its current weights, not a best point it kept before
        self.best: dict | None = resume.get("best") if resume and self.config.keep_best else None
        self.average: dict | None = resume.get("average") if resume else None

    def _read_resume(self) -> dict:
        cfg, path = self.config, self.out / RESUME_FILE
        if not path.exists():
            raise TrainingError(f"nothing to resume: {path} does not exist")
        try:
            resume = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or damaged file: torch raises several kinds
            raise TrainingError(f"{path} is damaged and cannot be resumed ({type(e).__name__}); start the run "
                                f"again without --resume, or into another --out") from None
        if not isinstance(resume, dict) or resume.get("format") != RESUME_FORMAT:
            raise TrainingError(f"{path} is not a resume checkpoint of this version")
        try:
            saved = TrainConfig.from_dict(resume["config"])
        except ValueError as e:  # a setting this version does not have
            raise TrainingError(f"{path} was written by another version: {e}") from None
        for key in ("mode", "base", "ctx_len", "batch_size", "seed", "n_layer", "n_embd", "lora_rank", "style_parts",
                    "style_rank", "offset_rank"):
            if getattr(saved, key) != getattr(cfg, key):
                raise TrainingError(f"cannot resume with a different {key} "
                                    f"({getattr(saved, key)!r} there, {getattr(cfg, key)!r} now)")
        return resume

    def _fit_schedule_to_budget(self, budget_s: float) -> None:
        """Set the run's length from the time the steps after the first took (the first also warms up; the
        validation passes are timed apart), at a few steps (BUDGET_FIT_STEPS), so that the whole schedule
        (warm-up, cosine decay) fits the wall-clock budget; the validation passes are counted in. A run that
        still overshoots by 5% (a machine that got busier) ends there."""
        done = self.step - self._step_start
        now = time.monotonic()
        elapsed = now - self._t_start
        if done == 1:
            self._t_first_step, self._eval_s_at_first = now, self._eval_s
        if elapsed > 1.05 * budget_s:
            self.total = self.stop_at = self.step
            return
        if done not in BUDGET_FIT_STEPS:
            return
        per_step = (now - self._t_first_step - (self._eval_s - self._eval_s_at_first)) / (done - 1)
        if self.val_windows:
            every = self._eval_interval(int((budget_s - elapsed) / per_step) + self.step)
            per_step *= 1 + min(self.config.max_eval_batches * self.config.batch_size, len(self.val_windows)) / (
                3 * self.config.batch_size * every)  # a forward is ~1/3 of a step
        steps = max(self.step + 1, self.step + int((budget_s - elapsed) / per_step))
        if self.config.steps is not None:
            steps = min(steps, int(self.config.steps))
        self.total = self.stop_at = steps
        if self.config.stop_at_step is not None:
            self.stop_at = min(self.total, self.config.stop_at_step)
        if self.config.warmup_steps is None:
            self.warmup = min(100, self.total // 20)
        self.emit(TrainEvent("step", step=self.step, total_steps=self.total,
                             message=f"{per_step:.2f} s per step: {self.total} steps fit the time budget"))

    def _train_step(self) -> None:
        """One optimizer step on the next global batch; no host synchronisation on a GPU."""
        cfg = self.config
        ids = self.batches.indices(self.epoch, self.index)
        examples = [self._example(i, self.epoch, self.index * cfg.batch_size + j) for j, i in enumerate(ids)]
        global_count = max(1.0, float(sum(e.mask.sum() for e in examples)))
        local = examples[self.rank::self.world]
        inputs, targets, mask = (t.to(self.device, non_blocking=True)
                                 for t in D.collate(local, self.tokenizer.pad_id))
        self.lr = lr_at(self.step, self.total, self.warmup, self.peak_lr, cfg.min_lr_ratio)
        for g in self.opt.param_groups:
            g["lr"] = self.lr * g.get("lr_scale", 1.0)  # a style's parts each have their own rate

        if cfg.bptt is not None:
            loss_sum = self._span_nll(inputs, targets, mask, backward_scale=1.0 / global_count)
        else:
            with self._autocast():
                logits = self.forward_module(inputs)
            nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
            loss_sum = (nll * mask.flatten()).sum()
            # the mean over the whole global batch: DDP averages gradients over ranks, hence * world
            (loss_sum * (self.world / global_count)).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        self.found_inf.copy_((~torch.isfinite(grad_norm)).float())
        self.opt.found_inf = self.found_inf  # fused AdamW skips the whole update when it is 1
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._acc_bad += self.found_inf
        self._acc_loss += torch.where(self.found_inf > 0, torch.zeros_like(loss_sum), loss_sum.detach() / global_count)
        self._acc_steps += 1
        self._acc_tokens += int(global_count)

        self.step += 1
        self.index += 1
        if self.index >= self.batches.per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        self._update_average()

    def _span_nll(self, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                  backward_scale: float | None = None) -> torch.Tensor:
        """The summed masked NLL of a batch run in spans of `bptt` tokens, the recurrent state carried from
        each span to the next: the logits are those of one pass over the whole window. With
        `backward_scale`, each span's loss (times it) is backpropagated at once and the state detached
        after it (truncated BPTT), so memory holds one span, not the window. A row leaves the batch after
        its last scored target, so a short piece beside a long one costs no padded spans."""
        span, model = self.config.bptt, self.module.model
        T = inputs.shape[1]
        scored = mask > 0
        ends = torch.where(scored.any(1), T - scored.flip(1).int().argmax(1), 0)  # one past the last target
        rows = torch.arange(inputs.shape[0], device=inputs.device)
        total, state = torch.zeros((), device=inputs.device), None
        for start in range(0, T, span):
            keep = ends[rows] > start
            if not bool(keep.all()):
                if state is not None:
                    state = state.select(keep.nonzero().flatten())
                rows = rows[keep]
            if len(rows) == 0:
                break
            stop = min(T, start + span)
            with self._autocast():
                logits, state = model(inputs[rows, start:stop], state, return_state=True)
            nll = F.cross_entropy(logits.float().flatten(0, 1), targets[rows, start:stop].flatten(), reduction="none")
            part = (nll * mask[rows, start:stop].flatten()).sum()
            if backward_scale is not None:
                (part * backward_scale).backward()
                state = state.detach()
            total = total + part.detach()
        return total

    def _update_average(self) -> None:
        """The running mean of the trained parameters over every step since average_from x the steps: it
        sits nearer the middle of the low-loss region the last steps wander in than any one of them."""
        share = self.config.resolved("average_from")
        if share is None or self.step < max(1, math.ceil(share * self.total)):
            return
        with torch.no_grad():
            current = {n: p for n, p in self.module.named_parameters() if p.requires_grad}
            if self.average is None:
                self.average = {"n": 1, "params": {n: p.detach().clone() for n, p in current.items()}}
                return
            self.average["n"] += 1
            for n, mean in self.average["params"].items():
                mean.add_(current[n].detach() - mean, alpha=1.0 / self.average["n"])

    def _log_progress(self) -> None:
        """A "step" event with the mean loss since the last one (the one host sync); stop when too many
        steps were skipped for a non-finite loss."""
        loss_total = self._all_sum(self._acc_loss)
        bad_now = int(self._acc_bad.item())
        ok_steps = self._acc_steps - bad_now
        self.bad_steps += bad_now
        now = time.monotonic()
        self.emit(TrainEvent(
            "step", step=self.step, total_steps=self.total, lr=self.lr,
            loss=(loss_total / ok_steps) if ok_steps else float("nan"),
            tokens_per_s=self._acc_tokens / max(now - self._t_log, 1e-9),
            eta_s=(now - self._t_start) / max(1, self.step - self._step_start) * (self.total - self.step),
            message=f"{bad_now} non-finite steps skipped" if bad_now else ""))
        self._acc_loss.zero_()
        self._acc_bad.zero_()
        self._acc_steps, self._acc_tokens, self._t_log = 0, 0, now
        if self.bad_steps > self.config.max_bad_steps:
            self._checkpoint()
            raise TrainingError(f"training diverged: {self.bad_steps} steps had a non-finite loss; "
                                f"try a lower learning rate (now {self.peak_lr:g})")

    def _checkpoint(self) -> dict:
        """resume.pt (everything an exact resume needs, loadable with weights_only=True) and the result
        file, both written atomically by rank 0. Returns their paths."""
        if self.rank != 0:
            return {}
        cfg = self.config
        ckpt = {
            "format": RESUME_FORMAT, "config": cfg.to_dict(), "tokenizer": self.tokenizer.to_dict(),
            "step": self.step, "epoch": self.epoch, "index": self.index, "bad_steps": self.bad_steps,
            "total_steps": self.total, "data": self.fingerprint, "meta": self.meta,
            "module": self.module.state_dict(), "optimizer": self.opt.state_dict(), "best": self.best,
            "average": self.average,
            "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }
        resume_path = self.out / RESUME_FILE
        with atomic_write(resume_path) as f:
            torch.save(ckpt, f)
        result = self._write_result()
        paths = {"resume": str(resume_path), "result": str(result)}
        self.emit(TrainEvent("checkpoint", step=self.step, total_steps=self.total, paths=paths,
                             message=f"checkpoint at step {self.step}"))
        return paths

    def _eval_interval(self, total: int | None = None) -> int:
        """Steps between validation passes: --eval-every, else about eight a run, 10 to 100 steps apart, and
        at least twice an epoch (a folder of 20 pieces is a few steps an epoch, and over-fits within a few)."""
        if self.config.eval_every:
            return self.config.eval_every
        return max(1, min(100, max(10, (total or self.total) // 8), self.batches.per_epoch // 2))

    def _validate(self) -> None:
        t0 = time.monotonic()
        with self._swapped_in(self.average["params"] if self.average else None):
            self.last_val = self.evaluate()
            self._remember_if_best()
        self._eval_s += time.monotonic() - t0
        self.emit(TrainEvent("eval", step=self.step, total_steps=self.total, **self.last_val))

    @contextmanager
    def _swapped_in(self, values: dict[str, torch.Tensor] | None):
        """The module's parameters replaced by `values` for a while, the current ones put back exactly."""
        if not values:
            yield
            return
        params = dict(self.module.named_parameters())
        current = {n: params[n].detach().clone() for n in values}
        with torch.no_grad():
            for n, t in values.items():
                params[n].copy_(t)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, t in current.items():
                    params[n].copy_(t)

    def _remember_if_best(self) -> None:
        """Keep a copy (on the CPU) of the trained parameters at the lowest validation loss so far: a small
        folder over-fits within minutes, and the result file then holds its best point, not the last."""
        loss = self.last_val.get("val_loss")
        if not self.config.keep_best or loss is None or not math.isfinite(loss):
            return
        if self.best is None or loss < self.best["val"]["val_loss"]:
            # only rank 0 writes the result, so only it keeps the parameters
            params = {n: p.detach().to("cpu", copy=True) for n, p in self.module.named_parameters()
                      if p.requires_grad and self.rank == 0}
            self.best = {"step": self.step, "val": dict(self.last_val), "params": params}

    def _write_result(self) -> Path:
        """model.pth / style.pth: the best validation point's parameters (keep_best), else the current ones.
        The best ones are swapped in for the export and the current ones put back exactly."""
        best = self.best
        if best is None or best["step"] == self.step:
            return export_result(self.module, self.config, self.out, {**self.meta, "step": self.step, **self.last_val},
                                 self.memory_pieces)
        with self._swapped_in(best["params"]):
            return export_result(self.module, self.config, self.out,
                                 {**self.meta, "step": best["step"], "last_step": self.step, **best["val"]},
                                 self.memory_pieces)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)  # bf16 needs no GradScaler
        return torch.autocast("cpu", enabled=False)

    def _all_sum(self, t: torch.Tensor) -> float:
        if self.world > 1:
            import torch.distributed as dist
            t = t.clone()
            dist.all_reduce(t)
        return float(t.item())

    def _example(self, window_index: int, epoch: int, position: int) -> D.Example:
        cfg, tok = self.config, self.tokenizer
        w = self.train_windows[window_index]
        tokens, head = D.window_tokens(self.train_pieces, w)
        crop_draw = random.Random(f"crop:{cfg.seed}:{epoch}:{position}")
        if self.piece_bars and crop_draw.random() < self.crop_share:
            crop = A.cropped(self.train_pieces[w.piece].tokens, self.piece_bars[w.piece], w.n_tokens,
                             random.Random(f"crop-at:{cfg.seed}:{epoch}:{position}"))
            if crop is not None:
                tokens, head = crop
        if cfg.augment:
            rng = random.Random(f"{cfg.seed}:{epoch}:{position}")
            tokens = A.augment_tokens(tokens, tok, rng, cfg.max_transpose, cfg.tempo_jitter)
        rng = random.Random(f"key:{cfg.seed}:{epoch}:{position}")
        if self.piece_keys and rng.random() < self.key_share:
            tokens = A.in_another_key(tokens, tok, self.piece_keys[w.piece], self.piece_keys, rng)
        if not cfg.dynamics_flag and tok.flat_id is not None:
            head -= tokens[:head].count(tok.flat_id)
            tokens = D.without_flat(tokens, tok)
        if cfg.infill_share > 0:
            rng = random.Random(f"infill:{cfg.seed}:{epoch}:{position}")
            if rng.random() < cfg.infill_share:
                seq = D.infill_tokens(tokens, tok, rng, cfg.ctx_len + 1, cfg.part_share)
                if seq is not None:
                    tokens, head = seq, 0  # every token of an infill example is learnt
        return D.build_example(tokens, cfg.ctx_len, head if cfg.completion_only else 0, tok.pad_id)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation loss (nats per token) and bits per note over the validation windows of this rank."""
        cfg, tok = self.config, self.tokenizer
        module = self.module
        was_training = module.training
        module.eval()
        windows = self.val_windows[: cfg.max_eval_batches * cfg.batch_size]
        # by length, so that each batch pads to little more than its windows (the sums do not care)
        windows = sorted(windows[self.rank::self.world], key=lambda w: w.n_tokens)
        totals = torch.zeros(3, dtype=torch.float64)  # nll nats, tokens, notes
        for i in range(0, len(windows), cfg.batch_size):
            exs = []
            for w in windows[i:i + cfg.batch_size]:
                tokens, head = D.window_tokens(self.val_pieces, w)
                exs.append(D.build_example(tokens, cfg.ctx_len, head if cfg.completion_only else 0, tok.pad_id))
            inputs, targets, mask = D.collate(exs, tok.pad_id)
            notes = float((self.is_note[targets.numpy()] * mask.numpy()).sum())
            if cfg.bptt is not None:  # a long window in spans, the state carried: the same sums, less memory
                nll_sum = float(self._span_nll(inputs.to(self.device), targets.to(self.device), mask.to(self.device)))
            else:
                with self._autocast():
                    logits = module(inputs.to(self.device))
                nll = F.cross_entropy(logits.float().flatten(0, 1), targets.to(self.device).flatten(), reduction="none")
                nll_sum = float((nll.cpu() * mask.flatten()).sum())
            totals += torch.tensor([nll_sum, float(mask.sum()), notes], dtype=torch.float64)
        if self.world > 1:
            import torch.distributed as dist
            dist.all_reduce(totals)
        module.train(was_training)
        nll, n_tok, n_notes = totals.tolist()
        return {"val_loss": nll / max(n_tok, 1.0), "bits_per_note": bits_per_note(nats_to_bits(nll), n_notes)}


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def memory_only(config: TrainConfig, emit: Callable[[TrainEvent], None]) -> dict:
    """--mode memory: scan the folder and write a style of its memory alone (no training)."""
    t0 = time.monotonic()
    out = Path(config.out)
    if not Path(config.data).exists():
        raise TrainingError(f"no such folder: {config.data}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    tokenizer = base_tokenizer(config.base) if config.base else None
    if tokenizer is None:
        raise TrainingError("a folder memory belongs to a base model: give --base")
    pieces, report = D.scan_folder(config.data, tokenizer, cache_dir=config.cache_dir or str(out / "token_cache"),
                                   workers=config.workers)
    (out / SCAN_FILE).write_text(json.dumps(report.to_dict(), indent=1))
    emit(TrainEvent("scan", message=report.summary(), report=report.to_dict(), paths={"scan_report": str(out / SCAN_FILE)}))
    if not pieces:
        raise TrainingError(f"no usable MIDI file in {config.data} ({len(report.skipped)} skipped)")
    path = write_memory_style(config, [p.tokens for p in pieces], tokenizer)
    paths = {"result": str(path), "scan_report": str(out / SCAN_FILE)}
    tokens = sum(len(p.tokens) for p in pieces)
    emit(TrainEvent("done", paths=paths, message=f"memory: learnt {len(pieces)} pieces ({tokens:,} tokens) in "
                                                   f"{time.monotonic() - t0:.1f} s: {path}"))
    return paths


def run_training(config: TrainConfig, emit: Callable[[TrainEvent], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict:
    """Train in this process. Events go to `emit`; `should_stop()` is asked before every step (a True
    ends the run with a checkpoint). Returns the result paths. Raises TrainingError for user errors."""
    if config.mode == "memory":
        return memory_only(config, emit or (lambda e: None))
    trainer = _Trainer(config, emit or (lambda e: None), should_stop or (lambda: False))
    return trainer.run()


# --- command line (torchrun entry) -------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import torch.distributed as dist

    p = argparse.ArgumentParser(prog="python -m core.train", description="train (data-parallel under torchrun)")
    add_train_arguments(p)
    args = p.parse_args(argv)
    init_distributed_from_env()
    rank, _ = _dist_info()

    def emit(e: TrainEvent) -> None:
        if rank == 0 and e.kind != "scan":
            print(json.dumps(e.to_dict()), flush=True)

    try:
        run_training(config_from_args(args), emit)
        if dist.is_initialized():
            # every rank leaves together: a rank that tore its group down while rank 0 still wrote the result
            # aborted now and then in gloo ("terminate called without an active exception")
            dist.barrier()
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

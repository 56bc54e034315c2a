"""The training loop: pretraining and fine-tuning (full, LoRA, style and state tuning) with progress events,
checkpoints and exact resume.

Here: DDP set-up, the loop itself (`run_training(config, emit, should_stop)`, in this process) and its torchrun
entry: under `torchrun ... -m core.training.train` each rank takes a fixed slice of every global batch and gradients are
summed, so N processes compute what one process computes on the whole batch. The loop composes the parts that
live elsewhere, one job each:
- the windows and their batch order: core/training/train_data.py; one example's random draws: core/training/train_example.py;
- the loss, in one pass or in spans (--bptt), and validation: core/training/train_loss.py; with the piece memory in
  the loop (--memory-loss): core/training/memory_loss.py;
- the length, warm-up, learning rate and time-budget fit: core/training/train_schedule.py;
- the weights kept besides the trained ones (best point, running average): core/training/train_weights.py;
- resume.pt: core/training/train_resume.py;
- the module a run trains, its optimizer groups and its result file: core/training/train_model.py;
- a run's settings, learning rates, events and errors: core/training/train_config.py; its options: core/training/train_options.py;
- a run in a child process: core/training/train_job.py; scoring whole files with a trained model: core/evaluate/files.py.

Output folder: resume.pt (exact resume), model.pth (full/LoRA; LoRA merged) or style.pth (style, and its
variant state: see core/network/style.py), train_log.jsonl (one event per line), scan_report.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from core.training import data as D
from core.training.train_config import (LOG_FILE, MODES, RESUME_FILE, SCAN_FILE, TrainConfig, TrainEvent, TrainingError,
                                peak_lr)
from core.training.train_data import BatchOrder, TrainingSet
from core.training.train_example import draw_example, example_seed
from core.training.memory_loss import batch_memory_columns
from core.training.train_loss import StepLosses, batch_nll, span_nll, validation_loss
from core.training.train_model import base_tokenizer, build_model, export_result, wrap, write_memory_style
from core.training.train_options import add_train_arguments, config_from_args
from core.training.train_resume import ResumeState, capture_rng, restore_rng
from core.training.train_schedule import BudgetFit, Schedule, eval_interval
from core.training.train_weights import KeepBest, RunningAverage, swapped_in


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

    def _event(self, kind: str, **fields) -> TrainEvent:
        return TrainEvent(kind, step=self.step, total_steps=self.schedule.total, **fields)

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
        cfg, device, data = self.config, self.device, self.data
        log_every = cfg.log_every or (10 if device.type == "cuda" else 1)
        self._t_start = self.losses.since = time.monotonic()
        self._step_start = self.step
        if cfg.time_budget_s and (not cfg.resume or self.schedule.unfitted):
            self.budget = BudgetFit(cfg, self._t_start, self.step, len(data.val_windows), self.batches.per_epoch)
        self.emit(self._event("step", message=self.notice + (
            f"{len(data.train_pieces)} train / {len(data.val_pieces)} validation pieces, "
            f"{len(data.train_windows)} windows of {cfg.ctx_len} tokens, {self.schedule.total} steps of batch "
            f"{cfg.batch_size}, learning rate {self.peak_lr:g}")))
        if self.memory_pieces and self.rank == 0 and not cfg.resume:
            self._write_memory()
        if cfg.keep_best and data.val_windows and self.step == 0:
            self._validate()  # the starting point (a fine-tune: the base model) is a candidate too
        try:
            while self.step < self.schedule.stop_at:
                if self.should_stop():
                    paths = self._checkpoint()
                    self.emit(self._event("cancelled", paths=paths,
                                          message=f"stopped at step {self.step}; resume with --resume"))
                    return paths
                self._train_step()
                if self.budget:
                    note = self.budget.after_step(self.schedule, self.step, time.monotonic())
                    if note:
                        self.emit(self._event("step", message=note))
                if self.step % log_every == 0 or self.step == self.schedule.stop_at:
                    self._log_progress()
                total = self.schedule.total
                if data.val_windows and (self.step % eval_interval(cfg, total, self.batches.per_epoch) == 0
                                         or self.step == total):
                    self._validate()
                if self.step % cfg.checkpoint_every == 0 and self.step < self.schedule.stop_at:
                    self._checkpoint()
        except torch.OutOfMemoryError:
            smaller = max(1, cfg.batch_size // 2)
            raise TrainingError(f"out of GPU memory with batch {cfg.batch_size} x {cfg.ctx_len} tokens; try "
                                + (f"--batch {smaller}" if smaller < cfg.batch_size else "a shorter --ctx")) from None

        paths = {**self._checkpoint(), "log": str(self.out / LOG_FILE), "scan_report": str(self.out / SCAN_FILE)}
        finished = self.step >= self.schedule.total
        kept, best_step = "", self.best.step
        if best_step == 0:
            kept = (" (no step did better than the start on the validation pieces, so the result is the starting "
                    "point; more pieces or a lower --lr may help)")
        elif best_step is not None and best_step != self.step:
            kept = f" (the weights of step {best_step}, the lowest validation loss)"
        self.emit(self._event("done" if finished else "cancelled", paths=paths, **self.last_val,
                              message=(f"finished: {paths.get('result', '')}{kept}" if finished
                                       else f"paused at step {self.step}; resume with --resume")))
        return paths

    def _write_memory(self) -> None:
        """The style's first result, in seconds: the folder's memory alone, while the adapters train."""
        t0 = time.monotonic()
        path = write_memory_style(self.config, self.memory_pieces, self.tokenizer)
        self.emit(self._event("memory", paths={"result": str(path)},
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
        resume = None
        if cfg.resume:
            resume = ResumeState.from_file(self.out / RESUME_FILE)
            resume.check_resumable(cfg)
        self.tokenizer = self._tokenizer(resume)
        self._prepare_data()
        base_meta = self._prepare_model(resume)
        self.batches = BatchOrder([w.n_tokens for w in self.data.train_windows], cfg.batch_size, cfg.seed)
        self.schedule = Schedule.plan(cfg, self.batches.per_epoch, resume.total_steps if resume else None)
        self.peak_lr = peak_lr(cfg, self.data.train_tokens)
        self.opt = torch.optim.AdamW(self.module.optimizer_groups(self.peak_lr, cfg.weight_decay), lr=self.peak_lr,
                                     betas=(cfg.beta1, cfg.beta2), fused=True)
        self.found_inf = torch.zeros((), device=self.device)
        self._restore_position(resume)
        self.meta = {**base_meta, "tokenizer": self.tokenizer.to_dict(),
                     "training": {"mode": cfg.mode, "base": cfg.base, "data": str(cfg.data), "ctx_len": cfg.ctx_len,
                                  "bptt": cfg.bptt}}
        self.last_val: dict = {}
        self.losses = StepLosses(self.device)
        self.budget: BudgetFit | None = None  # set when the run starts (it times the steps)

    def _tokenizer(self, resume: ResumeState | None):
        from core.tokenizer import Tokenizer
        if resume:
            return Tokenizer.from_dict(resume.tokenizer)
        if self.config.base:
            return base_tokenizer(self.config.base)  # a fine-tune keeps its base model's vocabulary (v1 stays v1)
        return Tokenizer()

    def _prepare_data(self) -> None:
        """Scan the folder (scan_report.json, a "scan" event), split the pieces into training and validation
        and cut both into windows."""
        cfg = self.config
        pieces, report = self._scan(self.tokenizer)
        if self.rank == 0:
            (self.out / SCAN_FILE).write_text(json.dumps(report.to_dict(), indent=1))
        self.emit(TrainEvent("scan", message=report.summary(), report=report.to_dict(),
                             paths={"scan_report": str(self.out / SCAN_FILE)}))
        if not pieces:
            raise TrainingError(f"no usable MIDI file in {cfg.data} ({len(report.skipped)} skipped)")
        # a style keeps every piece of the folder in its memory (validation pieces too: it is the user's music)
        self.memory_pieces = [p.tokens for p in pieces] if cfg.mode == "style" else None
        self.data = TrainingSet.split(pieces, cfg, self.tokenizer)

    def _prepare_model(self, resume: ResumeState | None) -> dict:
        """The module the run trains, on its device, with the checkpoint's weights when resuming, and the
        DDP wrapper over it. Returns the base model's metadata."""
        cfg = self.config
        torch.manual_seed(cfg.seed)  # the same initial weights in every process and every run
        random.seed(cfg.seed)
        model, base_meta = build_model(cfg, self.tokenizer)
        self.module = wrap(model, cfg).to(self.device)
        if resume:  # before DDP, which starts every rank from rank 0's parameters
            self.module.load_state_dict(resume.module)
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.forward_module = self.module
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.forward_module = DDP(self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return base_meta

    def _restore_position(self, resume: ResumeState | None) -> None:
        """Step 0, or the checkpoint's step, batch position, optimizer state, random generators and the
        weights kept besides (best point, running average)."""
        self.step = self.epoch = self.index = self.bad_steps = 0
        self.notice = ""
        if resume:
            if resume.data_fingerprint != self.data.fingerprint:
                self.notice = "the folder changed since the checkpoint: the rest of the run sees another data order. "
            self.opt.load_state_dict(resume.optimizer)
            self.step, self.epoch, self.index, self.bad_steps = resume.step, resume.epoch, resume.index, resume.bad_steps
            restore_rng(resume.rng)
        self.best = KeepBest(self.config.keep_best, resume.best if resume else None)
        self.average = RunningAverage(self.config.resolved("average_from"), resume.average if resume else None)

    def _train_step(self) -> None:
        """One optimizer step on the next global batch; no host synchronisation on a GPU."""
        cfg = self.config
        ids = self.batches.indices(self.epoch, self.index)
        examples = [draw_example(self.data.source(i), cfg, self.tokenizer,
                                 example_seed(cfg.seed, self.epoch, self.index * cfg.batch_size + j))
                    for j, i in enumerate(ids)]
        global_count = max(1.0, float(sum(e.mask.sum() for e in examples)))
        local = examples[self.rank::self.world]
        batch = D.collate(local, self.tokenizer.pad_id)
        # what the piece memory says of each target: read from the tokens on the host, once per example
        memory = batch_memory_columns(*batch).to(self.device) if cfg.memory_loss else None
        inputs, targets, mask = (t.to(self.device, non_blocking=True) for t in batch)
        self.lr = self.schedule.lr(self.step, self.peak_lr, cfg.min_lr_ratio)
        for g in self.opt.param_groups:
            # each group learns at its multiple of the run's rate (a style's parts); a plain run's groups in a
            # resume file of an earlier version have no lr_scale
            g["lr"] = self.lr * g.get("lr_scale", 1.0)

        if cfg.bptt is not None:
            loss_sum = span_nll(self.module.model, inputs, targets, mask, cfg.bptt, backward_scale=1.0 / global_count,
                                memory=memory)
        else:
            loss_sum = batch_nll(self.forward_module, inputs, targets, mask, memory)
            # the mean over the whole global batch: DDP averages gradients over ranks, hence * world
            (loss_sum * (self.world / global_count)).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        self.found_inf.copy_((~torch.isfinite(grad_norm)).float())
        self.opt.found_inf = self.found_inf  # fused AdamW skips the whole update when it is 1
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.losses.add(loss_sum, global_count, self.found_inf)

        self.step += 1
        self.index += 1
        if self.index >= self.batches.per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        self.average.update(self.module, self.step, self.schedule.total)

    def _log_progress(self) -> None:
        """A "step" event with the mean loss since the last one (the one host sync); stop when too many
        steps were skipped for a non-finite loss."""
        losses = self.losses
        loss_total = self._all_sum(losses.loss)
        bad_now = int(losses.bad.item())
        ok_steps = losses.steps - bad_now
        self.bad_steps += bad_now
        now = time.monotonic()
        self.emit(self._event(
            "step", lr=self.lr, loss=(loss_total / ok_steps) if ok_steps else float("nan"),
            tokens_per_s=losses.tokens / max(now - losses.since, 1e-9),
            eta_s=(now - self._t_start) / max(1, self.step - self._step_start) * (self.schedule.total - self.step),
            message=f"{bad_now} non-finite steps skipped" if bad_now else ""))
        losses.restart(now)
        if self.bad_steps > self.config.max_bad_steps:
            self._checkpoint()
            raise TrainingError(f"training diverged: {self.bad_steps} steps had a non-finite loss; "
                                f"try a lower learning rate (now {self.peak_lr:g})")

    def _checkpoint(self) -> dict:
        """resume.pt (core/training/train_resume.py) and the result file, both written atomically by rank 0. Returns
        their paths."""
        if self.rank != 0:
            return {}
        resume_path = self.out / RESUME_FILE
        ResumeState(config=self.config.to_dict(), tokenizer=self.tokenizer.to_dict(), step=self.step,
                    epoch=self.epoch, index=self.index, bad_steps=self.bad_steps, total_steps=self.schedule.total,
                    data_fingerprint=self.data.fingerprint, meta=self.meta, module=self.module.state_dict(),
                    optimizer=self.opt.state_dict(), best=self.best.state(), average=self.average.state(),
                    rng=capture_rng()).to_file(resume_path)
        paths = {"resume": str(resume_path), "result": str(self._write_result())}
        self.emit(self._event("checkpoint", paths=paths, message=f"checkpoint at step {self.step}"))
        return paths

    def _validate(self) -> None:
        """Validate the running average where there is one, else the current weights; offer them to keep-best."""
        t0 = time.monotonic()
        with swapped_in(self.module, self.average.params):
            self.last_val = validation_loss(self.module, self.data.val_pieces, self.data.val_windows, self.config,
                                            self.tokenizer, self.device, self.rank, self.world)
            self.best.offer(self.module, self.step, self.last_val, keep_params=self.rank == 0)
        if self.budget:
            self.budget.validation_s += time.monotonic() - t0
        self.emit(self._event("eval", **self.last_val))

    def _write_result(self) -> Path:
        """model.pth / style.pth: the best validation point's parameters (keep_best), else the current ones.
        The best ones are swapped in for the export and the current ones put back exactly."""
        best = self.best.point
        if best is None or best["step"] == self.step:
            return export_result(self.module, self.config, self.out, {**self.meta, "step": self.step, **self.last_val},
                                 self.memory_pieces)
        with swapped_in(self.module, best["params"]):
            return export_result(self.module, self.config, self.out,
                                 {**self.meta, "step": best["step"], "last_step": self.step, **best["val"]},
                                 self.memory_pieces)

    def _all_sum(self, t: torch.Tensor) -> float:
        if self.world > 1:
            import torch.distributed as dist
            t = t.clone()
            dist.all_reduce(t)
        return float(t.item())


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

    p = argparse.ArgumentParser(prog="python -m core.training.train", description="train (data-parallel under torchrun)")
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

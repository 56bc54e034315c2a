"""What a training run is asked to do (TrainConfig, whose field defaults are the only place a training
default is written), its learning rates (DEFAULT_LR by mode, PART_LR_SCALE for a style's parts, peak_lr), what
it reports (TrainEvent, TrainingError) and the files it writes.

No torch here: the command-line parser (core/training/train_options.py), the GUI and the parent side of a training
job (core/training/train_job.py) read these without loading the training loop (core/training/train.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

# the files a run writes in its output folder (core/library.py reads them)
RESUME_FILE = "resume.pt"
MODEL_FILE = "model.pth"
STYLE_FILE = "style.pth"
LOG_FILE = "train_log.jsonl"
SCAN_FILE = "scan_report.json"

# state: a style of only the learned initial state; memory: a style of only the folder's memory (seconds)
MODES = ("full", "lora", "style", "state", "memory")
# Every learning rate of a run, written once: the peak rate by mode (--lr replaces it), and the rate of each part
# of a style as a multiple of it (so --lr scales every part alike).
DEFAULT_LR = {"scratch": 1e-3, "full": 1e-4, "lora": 1e-3, "state": 2e-2, "style": 3e-3}  # style: LoRA's part
# The state needs a far higher rate than the weights (RWKV's own state-tuning guide), and the offset lives in the
# state's units too. At the default rate a style's weights learn at 3e-3, its offset at 3e-2 and its state at 6e-2:
# three times the LoRA mode's and the state mode's rates, -10.0% against -8.4% at 1x in 120 s on the held-out
# collection, and better than 1x and 10x after 60 short steps (bench/bench_style.py, candidates ":x3", ":x10").
# The state mode trains its one part at the mode's own rate.
PART_LR_SCALE = {"style": {"lora": 1.0, "bias": 1.0, "offset": 10.0, "state": 20.0}, "state": {"state": 1.0}}
DEFAULT_STYLE_PARTS = "lora+offset+bias+state"  # the combination measured best (bench/bench_style.py)
# A style learns from a small folder for many passes; what keeps it from over-fitting, by mode (bench_style, 905
# folk tunes, 800 steps, bits/note): dropout 0.3 (-17.9%; 0.2: -17.7%, 0.4: -17.1%); half the windows moved into
# another piece's key (-18.1%; all of them: -16.3%); then half of them cropped from a random bar, and the
# running mean of the weights over the last 40% of the steps validated (-18.2% each; the three at 1200 steps: -20.9%)
MODE_DEFAULTS = {"dropout": {"style": 0.3}, "key_augment": {"style": 0.5}, "crop_share": {"style": 0.5},
                 "average_from": {"style": 0.6}}
DEFAULT_DROPOUT = MODE_DEFAULTS["dropout"]
# a style learns from a folder of this many training tokens or more at this factor times DEFAULT_LR's rates
# (bench_style, 905 folk tunes, 800 steps: -17.9% bits/note at twice the rates, -15.4% at once); a smaller
# folder at once them (twice made a 20-piece folder 5.7% worse than the base model: it over-fits in a few steps)
STYLE_LARGE_FOLDER = (100_000, 2.0)


def peak_lr(config: "TrainConfig", train_tokens: int) -> float:
    """The run's peak learning rate: --lr, else its mode's DEFAULT_LR (a style from a large folder: more)."""
    if config.lr is not None:
        return config.lr
    rate = DEFAULT_LR[config.mode if config.base else "scratch"]
    threshold, factor = STYLE_LARGE_FOLDER
    if config.mode == "style" and train_tokens >= threshold:
        rate *= factor
    return rate


class TrainingError(Exception):
    """A failure to tell the user as one line (bad input, nothing to train on, out of memory...)."""


@dataclass
class TrainConfig:
    data: str
    out: str
    base: str | None = None            # checkpoint to fine-tune; None: pretrain from scratch
    mode: str = "full"                 # one of MODES
    steps: int | None = None           # total optimizer steps; or
    epochs: float | None = None        # passes over the training windows (default 1 when neither)
    ctx_len: int = 512
    bptt: int | None = None            # run each window in spans of this many tokens, the state carried from one
                                       # span to the next and backpropagation cut between them (truncated BPTT:
                                       # windows far longer than memory allows); None: a window in one pass
    batch_size: int = 8
    lr: float | None = None            # default depends on the mode, see DEFAULT_LR (and STYLE_LARGE_FOLDER)
    min_lr_ratio: float = 0.1          # cosine decays to lr * this
    warmup_steps: int | None = None    # default: 5% of the steps, at most 100
    weight_decay: float = 0.01         # on 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    dropout: float | None = None       # on each block's outputs while training (default: DEFAULT_DROPOUT, else 0)
    lora_rank: int = 16
    lora_alpha: float = 32.0
    style_parts: str = DEFAULT_STYLE_PARTS  # style mode: what the style holds (core.network.style.PARTS)
    style_rank: int | None = None      # style mode: LoRA rank (None: the largest of 16..1 that fits 1 MB)
    offset_rank: int | None = None     # style mode: rank of the state offset per head (0: full; None: auto)
    n_layer: int = 6                   # model size when pretraining from scratch
    n_embd: int = 384
    val_fraction: float = 0.1          # pieces that validate (no more than max_eval_batches reads: the rest train)
    eval_every: int | None = None      # steps between validation passes (default: about 8 a run, 10-100 apart)
    max_eval_batches: int = 16         # validation windows: at most this many batches (the same ones each pass)
    keep_best: bool = True             # the result holds the weights of the lowest validation loss, not the last
    average_from: float | None = None  # from this share of the steps on, validate (and keep) the running average
                                       # of the trained weights instead of the current ones (default: by mode;
                                       # 1: from the last step, i.e. the current weights)
    checkpoint_every: int = 200
    log_every: int | None = None       # default: every step on CPU, every 10 on CUDA
    completion_only: bool = False      # no loss on the header restated at a window's start
    augment: bool = False              # random transposition and small tempo changes
    max_transpose: int = 5
    tempo_jitter: float = 0.05
    crop_share: float | None = None    # windows that start at a random Bar of their piece instead (same length)
    key_augment: float | None = None   # share of windows moved into another training piece's key
    memory_loss: bool = False          # learn the NLL of the network mixed with the piece memory (memory_loss.py)
    infill_share: float = 0.0          # training windows turned into infill examples (tokenizer v2)
    part_share: float = 0.5            # of those, part infills where the bars hold two instruments
    dynamics_flag: bool = True         # keep the Flat token of one-velocity pieces (False: an ablation)
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    stop_at_step: int | None = None    # pause (checkpoint and stop) here without changing the schedule
    max_bad_steps: int = 20            # non-finite losses tolerated (each skipped) before giving up
    workers: int | None = None         # tokenizer worker processes
    cache_dir: str | None = None       # default: <out>/token_cache
    threads: int | None = None         # torch CPU threads
    time_budget_s: float | None = None # wall-clock seconds of training: sets the number of steps (schedule)

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, name: str):
        """A setting of MODE_DEFAULTS as this run uses it: as given, else the mode's default, else off."""
        value = getattr(self, name)
        if value is not None:
            return value
        return MODE_DEFAULTS[name].get(self.mode, None if name == "average_from" else 0.0)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config of a dict written by to_dict (or by hand). A key that is not a setting is refused
        rather than dropped, so a misspelt setting never silently trains with its default."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in d if k not in names)
        if unknown:
            raise ValueError(f"unknown training setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
        return cls(**d)


@dataclass
class TrainEvent:
    """One progress report. Losses are mean nats per scored token (loss: the training batches since
    the last step event; val_loss: the validation windows); bits_per_note is the validation total in
    bits over the notes (pitch tokens) scored. paths: resume/result (and log, scan_report at the end)."""
    kind: str  # scan | memory (the folder's memory is written) | step | eval | checkpoint | done | error | cancelled
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    val_loss: float | None = None
    bits_per_note: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    lr: float | None = None
    message: str = ""
    paths: dict = field(default_factory=dict)
    report: dict | None = None  # the scan report, on "scan"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}

    @property
    def terminal(self) -> bool:
        return self.kind in ("done", "error", "cancelled")

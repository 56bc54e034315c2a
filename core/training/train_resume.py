"""resume.pt: everything an exact resume needs, as one dataclass (`ResumeState`) with its file's reader and writer.

The file is a dict of plain values and tensors (torch.save), so that it loads with weights_only=True: reading
it runs no code. Its keys have stayed those of the first format ("rwkv-music-resume/1"), so a run checkpointed
by an earlier version resumes here; entries added since (best, average) may be missing and read as None.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from core.atomic import atomic_write
from core.training.train_config import TrainConfig, TrainingError

RESUME_FORMAT = "rwkv-music-resume/1"
# settings a run cannot change when it resumes: they shape the model, its data order or its tokens
FIXED_ON_RESUME = ("mode", "base", "ctx_len", "batch_size", "seed", "n_layer", "n_embd", "lora_rank", "style_parts",
                   "style_rank", "offset_rank")


@dataclass
class ResumeState:
    """What resume.pt holds: the run's settings and position, its module and optimizer, the weights it keeps
    besides (best point, running average) and its random generators."""
    config: dict                  # TrainConfig.to_dict() of the run that wrote it
    tokenizer: dict               # Tokenizer.to_dict(): a resumed run keeps its vocabulary
    step: int                     # optimizer steps done
    epoch: int                    # the next batch's position in the batch order: (epoch, index)
    index: int
    bad_steps: int                # steps skipped for a non-finite loss so far
    total_steps: int              # the run's length (a bare --resume keeps it)
    data_fingerprint: str | None  # the training pieces' paths and contents (a changed folder is reported)
    meta: dict                    # the result file's metadata
    module: dict                  # the trained module's state_dict
    optimizer: dict               # the optimizer's state_dict
    best: dict | None             # KeepBest.state()
    average: dict | None          # RunningAverage.state()
    rng: dict                     # torch, Python and CUDA generators (capture_rng)

    def to_file(self, path: str | Path) -> None:
        """Write the file atomically: a run killed while writing leaves the previous checkpoint whole."""
        entries = {"format": RESUME_FORMAT, "config": self.config, "tokenizer": self.tokenizer, "step": self.step,
                   "epoch": self.epoch, "index": self.index, "bad_steps": self.bad_steps,
                   "total_steps": self.total_steps, "data": self.data_fingerprint, "meta": self.meta,
                   "module": self.module, "optimizer": self.optimizer, "best": self.best, "average": self.average,
                   "rng": self.rng}
        with atomic_write(path) as f:
            torch.save(entries, f)

    @classmethod
    def from_file(cls, path: str | Path) -> "ResumeState":
        """Read a resume file (CPU tensors); anything else, or a damaged one, is a TrainingError of one line."""
        path = Path(path)
        if not path.exists():
            raise TrainingError(f"nothing to resume: {path} does not exist")
        try:
            entries = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or damaged file: torch raises several kinds
            raise TrainingError(f"{path} is damaged and cannot be resumed ({type(e).__name__}); start the run "
                                f"again without --resume, or into another --out") from None
        if not isinstance(entries, dict) or entries.get("format") != RESUME_FORMAT:
            raise TrainingError(f"{path} is not a resume checkpoint of this version")
        try:
            TrainConfig.from_dict(entries["config"])
            return cls(config=entries["config"], tokenizer=entries["tokenizer"], step=entries["step"],
                       epoch=entries["epoch"], index=entries["index"], bad_steps=entries["bad_steps"],
                       total_steps=entries["total_steps"], data_fingerprint=entries.get("data"),
                       meta=entries["meta"], module=entries["module"], optimizer=entries["optimizer"],
                       best=entries.get("best"), average=entries.get("average"), rng=entries["rng"])
        except ValueError as e:  # a setting this version does not have
            raise TrainingError(f"{path} was written by another version: {e}") from None
        except KeyError as e:
            raise TrainingError(f"{path} is damaged and cannot be resumed (no {e.args[0]!r})") from None

    def check_resumable(self, config: TrainConfig) -> None:
        """Refuse (TrainingError) to go on with settings that differ from the run's in FIXED_ON_RESUME."""
        saved = TrainConfig.from_dict(self.config)
        for key in FIXED_ON_RESUME:
            if getattr(saved, key) != getattr(config, key):
                raise TrainingError(f"cannot resume with a different {key} "
                                    f"({getattr(saved, key)!r} there, {getattr(config, key)!r} now)")


def capture_rng() -> dict:
    """This process's random generators, as resume.pt keeps them."""
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def restore_rng(rng: dict) -> None:
    """Put back generators `capture_rng` took (Python's state went into the file as lists)."""
    torch.set_rng_state(rng["torch"])
    random.setstate(_to_tuple(rng["python"]))
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])

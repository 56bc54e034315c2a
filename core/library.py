"""The models the user can pick: the bundled base model, fine-tuned models and style files.

Headless (no torch, no Qt): it only looks at files and small JSON descriptions, so listing is instant.
Layout of the user data folder (`default_user_dir()`, or whatever the GUI passes in):

    <user>/runs/<name>/run.json      written when a fine-tune starts: name, mode, base, created
    <user>/runs/<name>/model.pth     the result of a full or LoRA fine-tune (core.training.train writes it)
    <user>/runs/<name>/style.pth     the result of style tuning: a style file for its base model
    <user>/models/*.pth              models copied in by hand
    <user>/styles/*.pth              style files copied in by hand (base model: the one in use)

The bundled base model is `<resources>/*.pth`; a JSON file of the same stem is its model card.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import atomic_write
from .paths import user_data_dir
from .training.train_config import LOG_FILE, MODEL_FILE, RESUME_FILE, STYLE_FILE

RUN_FILE = "run.json"
KINDS = ("base", "finetuned", "style")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str                   # base | finetuned | style
    path: Path                  # the checkpoint, or the style file
    base: Path | None = None    # for a style: the checkpoint it was learned on (None: the one in use)
    info: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        return self.label_while(None)

    def label_while(self, training_run: str | os.PathLike | None) -> str:
        """What the picker says; a run that stopped before its end is "paused", unless it is the run being
        trained now (`training_run`, its folder): then "training"."""
        suffix = {"base": "base model", "finetuned": "fine-tuned", "style": "style"}[self.kind]
        if self.info.get("finished") is False:
            training = training_run is not None and self.path.parent == Path(training_run)
            suffix += ", training" if training else ", paused"
        return f"{self.name} ({suffix})"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"], d["base"] = str(self.path), (str(self.base) if self.base else None)
        return d


def default_user_dir() -> Path:
    """The per-user data folder (core.paths.user_data_dir)."""
    return user_data_dir()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def list_models(resources_dir: str | os.PathLike | None, user_dir: str | os.PathLike | None) -> list[ModelEntry]:
    """Every usable model: bundled first, then fine-tuned runs and style files (newest first), then
    files copied in by hand. Unfinished runs (no result file yet) are left out."""
    entries: list[ModelEntry] = []
    if resources_dir and Path(resources_dir).is_dir():
        for p in sorted(Path(resources_dir).glob("*.pth")):
            entries.append(ModelEntry(p.stem, "base", p, info=_read_json(p.with_suffix(".json"))))
    if not user_dir:
        return entries
    user = Path(user_dir)
    runs = []
    for run in (user / "runs").glob("*/") if (user / "runs").is_dir() else []:
        info = _read_json(run / RUN_FILE)
        name = info.get("name") or run.name
        base = Path(info["base"]) if info.get("base") else None
        if (run / STYLE_FILE).is_file():
            runs.append(ModelEntry(name, "style", run / STYLE_FILE, base, info))
        elif (run / MODEL_FILE).is_file():
            runs.append(ModelEntry(name, "finetuned", run / MODEL_FILE, None, info))
    runs.sort(key=lambda e: (-(e.info.get("created") or e.path.stat().st_mtime), e.name))
    entries += runs
    for sub, kind in (("models", "finetuned"), ("styles", "style")):
        folder = user / sub
        if folder.is_dir():
            entries += [ModelEntry(p.stem, kind, p) for p in sorted(folder.glob("*.pth"))]
    return entries


def picker_order(entries: list[ModelEntry]) -> list[tuple[ModelEntry, int]]:
    """The entries as the model picker shows them, (entry, depth): every model at depth 0, each followed by
    the styles learnt on it at depth 1. A style that names no base (copied in by hand) goes under the first
    bundled model; one whose base is not in the list comes last, at depth 0 (its label says it is a style)."""
    def key(path: Path | None) -> str | None:
        try:
            return str(Path(path).resolve()) if path else None
        except OSError:
            return str(path)

    models = [e for e in entries if e.kind != "style"]
    styles = [e for e in entries if e.kind == "style"]
    first_base = next((e for e in models if e.kind == "base"), None)
    under: dict[str, list[ModelEntry]] = {}
    orphans = []
    known = {key(m.path) for m in models}
    for s in styles:
        base = key(s.base) if s.base else (key(first_base.path) if first_base else None)
        if base in known:
            under.setdefault(base, []).append(s)
        else:
            orphans.append(s)
    out = []
    for m in models:
        out.append((m, 0))
        out += [(s, 1) for s in under.get(key(m.path), [])]
    return out + [(s, 0) for s in orphans]


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return slug[:60] or "model"


def _free_run_folder(runs: Path, name: str) -> tuple[Path, int]:
    slug, n = _slug(name), 1
    folder = runs / slug
    while folder.exists():
        n += 1
        folder = runs / f"{slug}-{n}"
    return folder, n


def run_name_for(user_dir: str | os.PathLike, name: str) -> str:
    """The name new_run gives a run asked to be `name`: `name` itself when free, else "name 2", "name 3"...
    (so the GUI can ask before a name in use gets a number)."""
    _, n = _free_run_folder(Path(user_dir) / "runs", name)
    return name if n == 1 else f"{name} {n}"


def new_run(user_dir: str | os.PathLike, name: str, mode: str, base: str | os.PathLike | None,
            data_folder: str | os.PathLike | None = None) -> Path:
    """Create `<user>/runs/<unique name>/` with its run.json; training writes its results there."""
    runs = Path(user_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    folder, n = _free_run_folder(runs, name)
    folder.mkdir()
    info = {"name": name if n == 1 else f"{name} {n}", "mode": mode, "base": str(base) if base else None,
            "data": str(data_folder) if data_folder else None, "created": time.time(), "finished": False}
    write_json_atomic(folder / RUN_FILE, info)
    return folder


def run_info(run_dir: str | os.PathLike) -> dict:
    return _read_json(Path(run_dir) / RUN_FILE)


def update_run(run_dir: str | os.PathLike, **changes) -> dict:
    """Record progress in run.json (e.g. finished=True, step=..., val_loss=...)."""
    path = Path(run_dir) / RUN_FILE
    info = {**_read_json(path), **changes}
    write_json_atomic(path, info)
    return info


def resumable_runs(user_dir: str | os.PathLike, resume_file: str = RESUME_FILE) -> list[Path]:
    """Runs that stopped before the end (a resume checkpoint, not marked finished), newest first."""
    runs = Path(user_dir) / "runs"
    if not runs.is_dir():
        return []
    found = [r for r in runs.glob("*/") if (r / resume_file).is_file() and not run_info(r).get("finished")]
    return sorted(found, key=lambda r: -r.stat().st_mtime)


def loss_history(run_dir: str | os.PathLike) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, training loss) and (step, validation loss) from a run's log, so a resumed run's curve
    goes on from where it stopped. A resumed run logs again from its checkpoint: later lines win."""
    train: list[tuple[int, float]] = []
    val: list[tuple[int, float]] = []
    try:
        lines = (Path(run_dir) / LOG_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return train, val
    for line in lines:
        try:
            event = json.loads(line)
            step = int(event["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill: skip it
        for points, key in ((train, "loss"), (val, "val_loss")):
            value = event.get(key)
            if isinstance(value, (int, float)):
                while points and points[-1][0] >= step:
                    points.pop()
                points.append((step, float(value)))
    return train, val


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2))

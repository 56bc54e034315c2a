"""Where things are: the files that ship with the app (the bundled base model and its card), the user's
data (fine-tuned models, styles, training runs) and the caches (compiled kernels, tokenized corpora).

In a checkout they are in <checkout>/resources. `pip install .` installs the same files as package
data in <site-packages>/core/resources (pyproject.toml maps that package to resources/). Set
RWKV_MUSIC_RESOURCES to use another folder. The C++ and CUDA sources that are built just in time
sit beside the modules that build them (core/network/cpu_kernels.cpp, core/network/cuda/), in a checkout and installed.

The user's data and the caches are per user, in each platform's usual place (user_data_dir, cache_dir):
the app, the command line and the builds all use these two.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

RESOURCES_ENV = "RWKV_MUSIC_RESOURCES"
APP_DIR = "rwkv-music"  # the folder of ours inside the platform's data and cache folders
BASE_MODEL = "rwkv7-music-base.pth"
_PACKAGE = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """$RWKV_MUSIC_RESOURCES, else the installed core/resources, else the checkout's resources/."""
    if os.environ.get(RESOURCES_ENV):
        return Path(os.environ[RESOURCES_ENV]).expanduser().resolve()
    installed = _PACKAGE / "resources"
    return installed if installed.is_dir() else _PACKAGE.parent / "resources"


def base_model() -> Path | None:
    """The bundled base model (the first .pth in resources_dir() when it has another name), or None."""
    folder = resources_dir()
    if (folder / BASE_MODEL).is_file():
        return folder / BASE_MODEL
    return next(iter(sorted(folder.glob("*.pth"))), None)


def user_data_dir() -> Path:
    """Fine-tuned models, style files and training runs: %LOCALAPPDATA% on Windows, ~/Library/Application
    Support on macOS, else $XDG_DATA_HOME or ~/.local/share; then rwkv-music (where Qt's generic data
    location puts it, so the app and the command line share one folder)."""
    home = Path.home()
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(home / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(base).expanduser() / APP_DIR


def cache_dir(*parts: str) -> Path:
    """A cache folder (files that can always be made again): $XDG_CACHE_HOME or ~/.cache, then
    rwkv-music/<parts>."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().joinpath(APP_DIR, *parts)


if __name__ == "__main__":  # `python -m core.paths`: where an installed copy keeps its files
    print(f"resources:  {resources_dir()}")
    print(f"base model: {base_model() or 'none found'}")
    print(f"user data:  {user_data_dir()}")
    print(f"caches:     {cache_dir()}")

"""Where the files that ship with the app are: the bundled base model and its card.

In a checkout they are in <checkout>/resources. `pip install .` installs the same files as package
data in <site-packages>/core/resources (pyproject.toml maps that package to resources/). Set
RWKV_MUSIC_RESOURCES to use another folder. The C++ and CUDA sources that are built just in time
sit beside the modules that build them (core/step_cpu.cpp, core/cuda/), in a checkout and installed.
"""
from __future__ import annotations

import os
from pathlib import Path

RESOURCES_ENV = "RWKV_MUSIC_RESOURCES"
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


if __name__ == "__main__":  # `python -m core.paths`: where an installed copy keeps its files
    print(f"resources:  {resources_dir()}")
    print(f"base model: {base_model() or 'none found'}")

"""`rwkv-music train` fails with one line, not a traceback, on what a user can get wrong."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"


def test_train_errors_are_one_line(tmp_path):
    """A folder that cannot be created and a damaged resume.pt give one line, not a traceback."""
    from core.paths import base_model
    folder = DATA / "corpus" / "essenFolksong"
    cli = [sys.executable, "-m", "core.cli", "train", str(folder), "--base", str(base_model())]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = subprocess.run(cli + ["--out", str(blocker / "run"), "--mode", "memory"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and "cannot create the output folder" in out.stderr and "Traceback" not in out.stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / "resume.pt").write_bytes(b"\x80\x02 not a checkpoint")
    out = subprocess.run(cli + ["--out", str(run), "--mode", "style", "--steps", "2", "--resume"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "damaged" in out.stderr and "Traceback" not in out.stderr

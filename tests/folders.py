"""Folders of real MIDI files as a user has them, for the tests that scan, train or fine-tune."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CORPUS = Path(os.environ.get("RWKV_MUSIC_TEST_CORPUS", Path(__file__).parent / "data" / "corpus"))


def corpus_files(n: int | None = None) -> list[Path]:
    """Real pieces (from the music21 corpus) shipped with the tests, smallest first."""
    files = sorted(CORPUS.rglob("*.mid"), key=lambda p: (p.stat().st_size, p.as_posix()))
    assert files, f"no test MIDI files in {CORPUS}"
    return files[:n] if n else files


def make_folder(root: Path, n: int, broken: bool = True) -> Path:
    """A user-like folder: real pieces in nested folders with mixed-case suffixes, plus broken files."""
    folder = root / "midi"
    (folder / "nested" / "deeper").mkdir(parents=True)
    for i, f in enumerate(corpus_files(n)):
        target = folder / ("nested" if i % 2 else "") / f"{i:02d}-{f.stem}{'.MID' if i % 3 == 2 else '.mid'}"
        shutil.copy(f, target)
    if broken:
        (folder / "nested" / "deeper" / "noise.mid").write_bytes(bytes(range(256)) * 4)
        (folder / "cut.midi").write_bytes(corpus_files(1)[0].read_bytes()[:60])
        (folder / "notes.txt").write_text("not music, and not a .mid: never looked at")
    return folder


def chorale_folder(root: Path, name: str, n: int, not_midi: bool = False) -> Path:
    """A flat folder `root/name` of the first `n` Bach chorales, with a file named .mid that is not MIDI."""
    folder = root / name
    folder.mkdir()
    for f in sorted((CORPUS / "bach").glob("*.mid"))[:n]:
        shutil.copy(f, folder / f.name)
    if not_midi:
        (folder / "not really.mid").write_bytes(b"this is not a MIDI file")
    return folder

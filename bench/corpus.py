"""The benchmark corpus (tools/make_corpus.py: manifest.json lists each piece's file, collection and split)
and folders of links to its files for the training loop to scan. Shared by the bench/ scripts."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Corpus:
    root: Path
    entries: list[dict]  # the manifest's pieces whose file is there

    @classmethod
    def load(cls, root: str | Path) -> "Corpus":
        root = Path(root)
        manifest = root / "manifest.json"
        if not manifest.exists():
            raise SystemExit(f"{manifest} not found: build the corpus with tools/make_corpus.py first")
        pieces = json.loads(manifest.read_text())["pieces"]
        return cls(root, [e for e in pieces if (root / e["file"]).is_file()])

    def files(self, splits: tuple[str, ...], *, only: str | None = None, without: str | None = None) -> list[str]:
        """Files of the splits, taken in turn from each collection (so the first N of them span the corpus);
        with `only`, that collection's in manifest order."""
        by_collection: dict[str, list[str]] = {}
        for e in self.entries:
            if e["split"] in splits and (only is None or e["collection"] == only) \
                    and (without is None or e["collection"] != without):
                by_collection.setdefault(e["collection"], []).append(e["file"])
        groups = [by_collection[c] for c in sorted(by_collection)]
        return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]

    def collection_of(self, file: str) -> str:
        return next((e["collection"] for e in self.entries if e["file"] == file), "?")

    def collections(self) -> set[str]:
        return {e["collection"] for e in self.entries}


def link_folder(corpus: Corpus, files: list[str], dest: Path) -> Path:
    """A folder of symbolic links to `files` (relative paths kept), for the training loop to scan. An existing
    folder is replaced only if it holds nothing but links (one a benchmark made), never real files."""
    if dest.exists():
        real = [f for f in dest.rglob("*") if not f.is_symlink() and not f.is_dir()]
        if real or not dest.is_dir():
            raise SystemExit(f"{dest} exists and holds real files: choose another folder")
        shutil.rmtree(dest)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink((corpus.root / rel).resolve(), target)
    dest.mkdir(parents=True, exist_ok=True)
    return dest

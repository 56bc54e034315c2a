"""Link the training split of one or more corpus folders into one training folder (symbolic links, no copies).

    python tools/link_training.py --out data/pretrain_v3 data/corpus data/groove \
        --without oneills1850 --held-out resources/base-v2-corpus-manifest.json --manifest runs/v3/manifest.json

Each source folder holds MIDI files and the manifest.json that tools/make_corpus.py, make_pop909.py or
make_groove.py wrote. A file is linked when its split there is `train`, its collection is not --without, and
no --held-out manifest (an earlier model's) puts a piece of that name in its validation or test split, so
a new model never trains on what an older one was measured on. --share COLLECTION=F keeps the fraction F of a
collection's training files (chosen by a hash of the file name, so the same ones every time): a short run
then sees a mix weighted toward what it has to learn. --manifest writes the list of what was linked
(and from where), the record a model card points to. A file name in two source folders is the same piece
(the names come from the source's path): the first folder's copy is linked.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import sys
from collections import Counter


def held_out_files(paths: list[pathlib.Path]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        out |= {p["file"] for p in json.loads(path.read_text())["pieces"] if p["split"] != "train"}
    return out


def kept(file: str, share: float) -> bool:
    return int.from_bytes(hashlib.sha256(file.encode()).digest()[:8], "big") / 2.0 ** 64 < share


def link(sources: list[pathlib.Path], out: pathlib.Path, without: set[str], held: set[str],
         shares: dict[str, float] | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    linked, seen = [], set()
    for src in sources:
        manifest_path = src / "manifest.json"
        if not manifest_path.exists():
            raise SystemExit(f"error: {manifest_path} not found")
        for p in json.loads(manifest_path.read_text())["pieces"]:
            if p["split"] != "train" or p["collection"] in without or p["file"] in held:
                continue
            if not kept(p["file"], (shares or {}).get(p["collection"], 1.0)):
                continue
            if p["file"] in seen:  # the same piece built twice (a larger build of a collection): the first wins
                continue
            seen.add(p["file"])
            target = out / p["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink((src / p["file"]).resolve(), target)
            linked.append({"file": p["file"], "collection": p["collection"], "source": p.get("source"),
                           "from": str(src), "notes": p.get("notes")})
    return linked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="+", type=pathlib.Path)
    p.add_argument("--out", required=True, type=pathlib.Path)
    p.add_argument("--without", nargs="*", default=[], help="collections never trained on")
    p.add_argument("--held-out", nargs="*", default=[], type=pathlib.Path,
                   help="manifests whose validation and test pieces stay out")
    p.add_argument("--share", nargs="*", default=[], metavar="COLLECTION=F",
                   help="keep this fraction (0-1) of a collection's training files")
    p.add_argument("--manifest", type=pathlib.Path, help="write the list of linked files here")
    args = p.parse_args(argv)
    shares = {}
    for item in args.share:
        name, _, value = item.partition("=")
        try:
            shares[name] = float(value)
        except ValueError:
            shares[name] = -1.0
        if not 0.0 < shares[name] <= 1.0:
            raise SystemExit(f"error: --share wants COLLECTION=F with 0 < F <= 1, not {item!r}")
    linked = link(args.sources, args.out, set(args.without), held_out_files(args.held_out), shares)
    counts = Counter(e["collection"] for e in linked)
    if args.manifest:
        args.manifest.write_text(json.dumps({"collections": counts, "pieces": linked}, indent=1) + "\n")
    print(f"{len(linked)} training files linked into {args.out}: {dict(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

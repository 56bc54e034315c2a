"""Add the Groove MIDI Dataset's drum performances (../shared/corpus/groove, CC BY 4.0) to a corpus folder.

    python tools/make_groove.py --src ../shared/corpus/groove --out data/corpus

The files are already what the model should read: drums on MIDI channel 10 (the tokenizer's `Drums`
instrument), human timing and velocities, the declared tempo and meter. Each one is copied unchanged to
`groove/<name>.mid` in --out after core.midi has read it back with drum notes, and gets an entry in
--out/manifest.json (collection "groove") whose split is THE DATASET'S OWN (`info.csv`: train or
validation), not the hash split of tools/make_corpus.py: its test split is kept apart for measuring and is
not in the source folder; a row that names it is refused. A model trained on these files must credit the
dataset (Gillick et al., ICML 2019, CC BY 4.0) in its model card.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import shutil
import sys
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COLLECTION = "groove"
SPLITS = {"train": "train", "validation": "validation"}  # the dataset's split -> the manifest's
CREDIT = ("Groove MIDI Dataset v1.0.0 (Gillick, Roberts, Engel, Eck, Bamman, ICML 2019), "
          "Creative Commons Attribution 4.0 International")


def read_rows(src: pathlib.Path) -> list[dict]:
    """The rows of info.csv; a missing column or a split other than train / validation is an error."""
    path = src / "info.csv"
    if not path.exists():
        raise SystemExit(f"error: {path} not found (is --src the Groove folder?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"drummer", "style", "bpm", "beat_type", "time_signature", "split", "file"}
    if rows and not need <= set(rows[0]):
        raise SystemExit(f"error: {path} lacks the columns {sorted(need - set(rows[0]))}")
    for row in rows:
        if row["split"] not in SPLITS:
            raise SystemExit(f"error: {row['file']} is in the {row['split']!r} split: only train and validation "
                             "belong in a training corpus")
    return rows


def add_groove(src: pathlib.Path, out: pathlib.Path) -> dict:
    """Copy the files into out/groove and put their entries in out/manifest.json (replacing earlier groove
    entries, keeping every other collection's). Returns the manifest."""
    from core.midi import read_midi
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"pieces": [], "skipped": []}
    manifest["pieces"] = [e for e in manifest["pieces"] if e.get("collection") != COLLECTION]
    manifest["skipped"] = [e for e in manifest.get("skipped", []) if not e["source"].startswith(COLLECTION + "/")]
    for row in read_rows(src):
        name = pathlib.PurePosixPath(row["file"]).name
        source, file_name = f"{COLLECTION}/{name}", f"{COLLECTION}/{name}"
        dest = out / file_name
        try:
            score, _ = read_midi(src / row["file"])
            drums = sum(n.drum for n in score.notes)
            if not drums:
                raise ValueError("no drum notes (channel 10)")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".tmp")
            shutil.copyfile(src / row["file"], tmp)
            os.replace(tmp, dest)
        except Exception as e:  # core.midi raises MidiReadError, the copy OSError: list it and go on
            manifest["skipped"].append({"source": source, "reason": f"{type(e).__name__}: {e}"[:300]})
            continue
        manifest["pieces"].append({
            "file": file_name, "source": source, "collection": COLLECTION, "composer": row["drummer"],
            "title": f"{row['style']} {row['beat_type']} {row['bpm']} bpm {row['time_signature']}",
            "split": SPLITS[row["split"]], "notes": len(score.notes), "drum_notes": drums,
            "bars": len(score.bar_starts()), "licence": "CC BY 4.0"})
    manifest["splits"] = dict(Counter(e["split"] for e in manifest["pieces"]))
    manifest.setdefault("credits", {})[COLLECTION] = CREDIT
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=pathlib.Path, default=ROOT.parent / "shared" / "corpus" / "groove")
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = p.parse_args(argv)
    manifest = add_groove(args.src, args.out)
    ours = [e for e in manifest["pieces"] if e["collection"] == COLLECTION]
    skipped = [e for e in manifest["skipped"] if e["source"].startswith(COLLECTION + "/")]
    print(f"{len(ours)} Groove files written to {args.out}/{COLLECTION} "
          f"{dict(Counter(e['split'] for e in ours))}, {len(skipped)} skipped")
    for s in skipped:
        print(f"  skipped {s['source']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

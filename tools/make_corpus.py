"""Build a MIDI corpus from the scores shipped inside the `music21` package (the optional `corpus` extra).

    python tools/make_corpus.py --out corpus/ [--collections bach essenFolksong ...] [--limit N] [--workers 4]

Every piece becomes one .mid file, checked by reading it back with core.midi; a manifest.json beside them
records for each file its source, collection, composer, title and a train/validation/test split decided by
hashing the piece name (so a piece keeps its split whatever else is added). Pieces that fail are skipped and
listed in the manifest. A part that names its instrument is written with that instrument's MIDI program
(`name_programs`), not program 0. A full build takes long (thousands of pieces): run it on demand, not in tests.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Collections of the music21 corpus, and who wrote them.
COMPOSERS = {
    "bach": "Johann Sebastian Bach", "essenFolksong": "traditional", "ryansMammoth": "traditional",
    "oneills1850": "traditional", "palestrina": "Giovanni Pierluigi da Palestrina", "monteverdi": "Claudio Monteverdi",
    "beethoven": "Ludwig van Beethoven", "haydn": "Joseph Haydn", "mozart": "Wolfgang Amadeus Mozart",
    "josquin": "Josquin des Prez", "trecento": "various (14th century)", "corelli": "Arcangelo Corelli",
    "schubert": "Franz Schubert", "handel": "George Frideric Handel", "joplin": "Scott Joplin",
}
DEFAULT_COLLECTIONS = ["bach", "essenFolksong", "ryansMammoth", "oneills1850", "palestrina", "beethoven", "haydn",
                       "mozart", "monteverdi"]
NOTATION_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid", ".midi"}  # not analyses (.rntxt)
SPLITS = (("train", 90), ("validation", 95), ("test", 100))  # cumulative percent of hash buckets


def split_of(piece: str) -> str:
    """train / validation / test, 90/5/5, from a stable hash of the piece name."""
    bucket = int.from_bytes(hashlib.sha256(piece.encode()).digest()[:8], "big") % 100
    return next(name for name, upper in SPLITS if bucket < upper)


def collection_pieces(collection: str) -> list[tuple[pathlib.Path, int | None]]:
    """(file, tune number) of every piece in a collection; an ABC file may hold many tunes (X: numbers).
    "haydn/opus74no1" means the pieces of collection "haydn" under that folder."""
    from music21 import corpus
    paths = sorted(pathlib.Path(p) for p in corpus.getComposer(collection.split("/")[0]))
    pieces: list[tuple[pathlib.Path, int | None]] = []
    for path in paths:
        under = (_relative(path) + "/").startswith(collection.rstrip("/") + "/")
        if path.suffix.lower() not in NOTATION_SUFFIXES or not under:
            continue
        numbers = _abc_tune_numbers(path) if path.suffix.lower() == ".abc" else []
        pieces += [(path, n) for n in numbers] if len(numbers) > 1 else [(path, None)]
    return pieces


def _abc_tune_numbers(path: pathlib.Path) -> list[int]:
    text = path.read_text(encoding="latin-1")
    return list(dict.fromkeys(int(m) for m in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)))


def _relative(path: pathlib.Path) -> str:
    """The path inside music21's corpus folder, e.g. "bach/bwv66.6.mxl"."""
    from music21 import corpus
    try:
        return path.relative_to(pathlib.Path(corpus.__file__).parent).as_posix()
    except ValueError:
        return path.name


def piece_name(path: pathlib.Path, number: int | None) -> str:
    return _relative(path) + (f"#{number}" if number is not None else "")


def _file_name(path: pathlib.Path, number: int | None) -> str:
    stem = str(pathlib.PurePosixPath(_relative(path)).with_suffix("")) + (f"-{number}" if number is not None else "")
    return re.sub(r"[^A-Za-z0-9._/-]", "_", stem) + ".mid"


def _write_midi(m21_score, path: pathlib.Path) -> None:
    """music21 refuses to expand badly formed repeats: then write the piece as notated, without repeats."""
    from music21 import bar, repeat
    try:
        m21_score.write("midi", fp=str(path))
    except repeat.ExpanderException:
        for m in m21_score.recurse().getElementsByClass("Measure"):
            if isinstance(m.leftBarline, bar.Repeat):
                m.leftBarline = None
            if isinstance(m.rightBarline, bar.Repeat):
                m.rightBarline = None
        for expression in list(m21_score.recurse().getElementsByClass(repeat.RepeatExpression)):
            expression.activeSite.remove(expression)
        m21_score.write("midi", fp=str(path))


def name_programs(m21_score) -> int:
    """Give each part that names its instrument ("Violin", "Soprano", "Basso continuo") but carries no MIDI
    program the program music21 knows for that name, so the file says what plays instead of program 0
    (a piano). Parts without a name, or with one music21 does not know, stay as they are. Returns how many
    parts got a program."""
    from music21 import instrument
    named = 0
    for part in getattr(m21_score, "parts", []):
        current = part.getInstrument(returnDefault=False)
        if current is not None and current.midiProgram is not None:
            continue  # the score says it already
        for name in (part.partName, current.instrumentName if current is not None else None):
            try:
                known = instrument.fromString(name) if name else None
            except Exception:  # music21 raises InstrumentException, or worse, for a name it cannot place
                known = None
            if known is not None and known.midiProgram is not None:
                if current is None:
                    part.insert(0, known)
                else:
                    current.midiProgram = known.midiProgram
                named += 1
                break
    return named


def convert_piece(task: tuple[str, str, int | None, str, int]) -> dict:
    """Convert one piece to MIDI and check that core.midi reads it back with notes.
    Returns its manifest entry, or {"source", "reason"} when it failed."""
    collection, source, number, out_dir, max_bytes, reuse = task
    collection = collection.split("/")[0]
    from music21 import converter

    from core.midi import read_midi
    path = pathlib.Path(source)
    piece = piece_name(path, number)
    file_name = _file_name(path, number)
    target = pathlib.Path(out_dir) / file_name
    if reuse and target.exists():  # a piece an interrupted build already wrote: keep it, skip music21
        try:
            score, _ = read_midi(target)
            return _entry(file_name, piece, collection, None, path.stem, score)
        except Exception:
            target.unlink(missing_ok=True)
    try:
        m21_score = converter.parse(source, number=number) if number is not None else converter.parse(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        name_programs(m21_score)
        _write_midi(m21_score, target)
        if target.stat().st_size > max_bytes:
            raise ValueError(f"its MIDI file of {target.stat().st_size} bytes is over --max-bytes")
        score, _ = read_midi(target)
        if not score.notes:
            raise ValueError("no notes")
    except Exception as e:  # music21's parsers and writer raise anything; core.midi raises MidiReadError
        target.unlink(missing_ok=True)
        reason = re.sub(r"id\(\)=\d+|0x[0-9a-f]+", "...", f"{type(e).__name__}: {e}")  # reproducible text
        return {"source": piece, "reason": reason[:300]}
    meta = m21_score.metadata
    return _entry(file_name, piece, collection, meta.composer if meta else None,
                  (meta.title if meta and meta.title else None) or path.stem, score)


def _entry(file_name: str, piece: str, collection: str, composer: str | None, title: str, score) -> dict:
    return {
        "file": file_name, "source": piece, "collection": collection,
        "composer": COMPOSERS.get(collection) or composer or "unknown", "title": title,
        "split": split_of(piece), "notes": len(score.notes), "bars": len(score.bar_starts()),
    }


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out_dir: pathlib.Path, collections: list[str], limit: int | None, workers: int,
          max_bytes: int, reuse: bool = False) -> dict:
    import music21
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces: list[dict] = []
    skipped: list[dict] = []
    written: set[str] = set()
    contents: dict[str, str] = {}  # sha256 of a written file -> its name
    with multiprocessing.Pool(workers) as pool:
        for collection in collections:
            try:
                candidates = collection_pieces(collection)
            except Exception as e:
                skipped.append({"source": collection, "reason": f"collection not available: {e}"})
                continue
            if not candidates:
                skipped.append({"source": collection, "reason": "collection not in this music21 corpus"})
                continue
            started, taken = time.monotonic(), 0
            # A few extra candidates stand in for pieces that fail; stop once `limit` pieces are written.
            tasks = [(collection, str(p), n, str(out_dir), max_bytes, reuse) for p, n in candidates]
            for i in range(0, len(tasks), max(workers * 2, 1)):
                if limit and taken >= limit:
                    break
                for record in pool.map(convert_piece, tasks[i:i + max(workers * 2, 1)]):
                    digest = _digest(out_dir / record["file"]) if "file" in record else None
                    if "file" in record and record["file"] in written:
                        # another edition of a piece already taken (bwv366.krn and bwv366.mxl): keep one
                        skipped.append({"source": record["source"], "reason": f"same piece as {record['file']}"})
                    elif "file" in record and digest in contents:
                        # the same music under another name (corpora repeat tunes and mass movements): a copy
                        # in the test split would also be in training, so keep the first only
                        (out_dir / record["file"]).unlink(missing_ok=True)
                        skipped.append({"source": record["source"], "reason": f"same file as {contents[digest]}"})
                    elif "file" not in record:
                        skipped.append(record)
                    elif limit and taken >= limit:
                        (out_dir / record["file"]).unlink(missing_ok=True)
                    else:
                        pieces.append(record)
                        written.add(record["file"])
                        contents[digest] = record["file"]
                        taken += 1
            print(f"{collection}: {taken} pieces in {time.monotonic() - started:.0f} s", file=sys.stderr)
    manifest = {
        "source": f"music21 {music21.__version__} corpus (tools/make_corpus.py)",
        "splits": {name: sum(p["split"] == name for p in pieces) for name, _ in SPLITS},
        "pieces": pieces,
        "skipped": skipped,
    }
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out_dir / "manifest.json")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=pathlib.Path)
    p.add_argument("--collections", nargs="+", default=DEFAULT_COLLECTIONS)
    p.add_argument("--limit", type=int, help="at most this many pieces per collection")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--reuse", action="store_true", help="keep pieces already in --out (resume an interrupted build)")
    p.add_argument("--max-bytes", type=int, default=4 * 1024 * 1024, help="skip pieces whose MIDI file is larger")
    args = p.parse_args(argv)
    try:
        import music21  # noqa: F401
    except ImportError:
        print("error: music21 is not installed (pip install -e '.[corpus]')", file=sys.stderr)
        return 2
    manifest = build(args.out, args.collections, args.limit, args.workers, args.max_bytes, args.reuse)
    print(f"{len(manifest['pieces'])} pieces written to {args.out} {manifest['splits']}, "
          f"{len(manifest['skipped'])} skipped")
    for s in manifest["skipped"]:
        print(f"  skipped {s['source']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Add the POP909 songs (../shared/corpus/pop909, MIT) to a corpus folder, with their real meter.

    python tools/make_pop909.py --src ../shared/corpus/pop909 --out data/corpus

Most POP909 files declare 1/4 for the whole song (the dataset knows beats, not bars), which would put a bar
line on every beat. The beat annotations (`annotations/NNN/beat_midi.txt`: time, beat flag, downbeat flag)
give the downbeats; this tool rewrites each file's time signatures from them (a short first bar for a
pickup, n/4 wherever the distance between downbeats changes) and moves every event by less than half a beat
so that the annotated beats fall on the MIDI beat grid. Everything else in the file (tracks, notes,
velocities, the sustain pedal, tempo) is kept as it is, through mido.

Each song becomes `pop909/NNN.mid` in --out, and an entry in --out/manifest.json (collection "pop909", the
train / validation / test split from the same hash of the piece name that tools/make_corpus.py uses).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections import Counter

import mido

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.make_corpus import split_of  # noqa: E402

MAX_BAR_BEATS = 8


def _seconds_to_ticks(midi: mido.MidiFile):
    """A function from seconds to ticks through the file's tempo map."""
    changes = []  # (tick, tempo) from all tracks
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                changes.append((tick, msg.tempo))
    changes.sort()
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 500000))
    segments = []  # (start seconds, start tick, seconds per tick)
    seconds = 0.0
    for i, (tick, tempo) in enumerate(changes):
        if i:
            prev_tick, prev_tempo = changes[i - 1]
            seconds += (tick - prev_tick) * prev_tempo / 1e6 / midi.ticks_per_beat
        segments.append((seconds, tick, tempo / 1e6 / midi.ticks_per_beat))

    def to_ticks(t: float) -> float:
        start_s, start_tick, per_tick = next(s for s in reversed(segments) if s[0] <= t or s is segments[0])
        return start_tick + (t - start_s) / per_tick
    return to_ticks


def meter_from_beats(beats: list[tuple[float, bool]], tpb: int) -> tuple[int, list[tuple[int, int]]]:
    """(shift in ticks to put the beats on the grid, [(tick, beats per bar)] after the shift) from the
    annotated beats (tick, is downbeat)."""
    if not beats:
        return 0, [(0, 4)]
    offsets = Counter(round(t) % tpb for t, _ in beats)
    phase = offsets.most_common(1)[0][0]
    shift = phase if phase <= tpb // 2 else phase - tpb  # events move earlier by `shift` ticks
    downbeats = sorted({round((t - shift) / tpb) for t, down in beats if down})
    if not downbeats:
        return shift, [(0, 4)]
    d0 = downbeats[0]
    by_beat = {0: d0 % 4 or 4, d0 % 4: 4}  # a pickup of d0 % 4 beats, then 4/4 up to the first downbeat
    for a, b in zip(downbeats, downbeats[1:]):
        by_beat[a] = b - a if 1 <= b - a <= MAX_BAR_BEATS else 4  # longer: missing annotations
    out: list[tuple[int, int]] = []
    for beat in sorted(by_beat):
        if not out or out[-1][1] != by_beat[beat]:
            out.append((beat * tpb, by_beat[beat]))
    return shift, out


def convert(src_midi: pathlib.Path, beat_file: pathlib.Path, dest: pathlib.Path) -> dict:
    midi = mido.MidiFile(src_midi)
    tpb = midi.ticks_per_beat
    to_ticks = _seconds_to_ticks(midi)
    beats = []
    for line in beat_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            beats.append((to_ticks(float(parts[0])), float(parts[2]) == 1.0))
    shift, meters = meter_from_beats(beats, tpb)
    out = mido.MidiFile(type=midi.type, ticks_per_beat=tpb)
    for i, track in enumerate(midi.tracks):
        events, tick = [], 0
        for msg in track:
            tick += msg.time
            if msg.type == "time_signature":
                continue
            events.append((max(tick - shift, 0), msg))
        if i == 0:
            events += [(t, mido.MetaMessage("time_signature", numerator=n, denominator=4)) for t, n in meters]
        events.sort(key=lambda e: (e[0], e[1].type == "end_of_track"))  # stable: same-tick order kept
        new, last = mido.MidiTrack(), 0
        for t, msg in events:
            new.append(msg.copy(time=t - last))
            last = t
        out.tracks.append(new)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    out.save(tmp)
    os.replace(tmp, dest)
    return {"shift_ticks": shift, "meters": meters}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=pathlib.Path, default=ROOT.parent / "shared" / "corpus" / "pop909")
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = p.parse_args(argv)
    from core.midi import read_midi
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"pieces": [], "skipped": []}
    manifest["pieces"] = [e for e in manifest["pieces"] if e.get("collection") != "pop909"]
    added = 0
    for src in sorted((args.src / "midi").glob("*.mid")):
        name = src.stem
        file_name = f"pop909/{name}.mid"
        try:
            info = convert(src, args.src / "annotations" / name / "beat_midi.txt", args.out / file_name)
            score, _ = read_midi(args.out / file_name)
        except Exception as e:  # a broken song is listed, the rest go on
            manifest.setdefault("skipped", []).append({"source": f"pop909/{name}", "reason": str(e)[:300]})
            continue
        manifest["pieces"].append({
            "file": file_name, "source": f"pop909/{name}", "collection": "pop909", "composer": "various (POP909)",
            "title": name, "split": split_of(f"pop909/{name}"), "notes": len(score.notes),
            "bars": len(score.bar_starts()), "meters": info["meters"][:4], "shift_ticks": info["shift_ticks"]})
        added += 1
    manifest["splits"] = dict(Counter(e["split"] for e in manifest["pieces"]))
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    print(f"{added} POP909 songs written to {args.out}/pop909, manifest {manifest['splits']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

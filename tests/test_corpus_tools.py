"""The corpus builders: make_corpus writes the program a part names, make_groove keeps the Groove dataset's own
split (drums on channel 10) and refuses its test split."""
from __future__ import annotations

import json

import mido
import pytest

from tools import make_groove


def _drum_file(path, notes=((36, 0), (42, 240), (38, 480))):
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    last = 0
    for pitch, tick in notes:
        track.append(mido.Message("note_on", channel=9, note=pitch, velocity=90, time=tick - last))
        track.append(mido.Message("note_off", channel=9, note=pitch, velocity=0, time=60))
        last = tick + 60
    mid.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)


def _groove(tmp_path, rows):
    src = tmp_path / "groove"
    lines = ["drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,duration,split,file"]
    for name, split in rows:
        _drum_file(src / "midi" / name)
        lines.append(f"drummer1,drummer1/session1,drummer1/session1/1,rock,120,beat,4-4,x/{name},2.0,{split},"
                     f"midi/{name}")
    (src / "info.csv").write_text("\n".join(lines) + "\n")
    return src


def test_groove_files_keep_the_datasets_split_and_other_collections(tmp_path):
    src = _groove(tmp_path, [("a.mid", "train"), ("b.mid", "validation")])
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"pieces": [{"file": "bach/x.mid", "collection": "bach",
                                                               "split": "test"}], "skipped": []}))
    manifest = make_groove.add_groove(src, out)
    again = make_groove.add_groove(src, out)  # a second run replaces its entries, never doubles them
    assert again["pieces"] == manifest["pieces"]
    groove = {e["file"]: e for e in manifest["pieces"] if e["collection"] == "groove"}
    assert {f: e["split"] for f, e in groove.items()} == {"groove/a.mid": "train", "groove/b.mid": "validation"}
    assert all(e["drum_notes"] == e["notes"] == 3 for e in groove.values())
    assert (out / "groove" / "a.mid").read_bytes() == (src / "midi" / "a.mid").read_bytes()
    assert any(e["collection"] == "bach" for e in manifest["pieces"])
    assert "CC BY" in manifest["credits"]["groove"] or "Attribution 4.0" in manifest["credits"]["groove"]


def test_groove_refuses_a_test_split_row(tmp_path):
    src = _groove(tmp_path, [("a.mid", "train"), ("t.mid", "test")])
    with pytest.raises(SystemExit, match="test"):
        make_groove.add_groove(src, tmp_path / "corpus")


def test_a_named_part_gets_its_program():
    music21 = pytest.importorskip("music21")
    from music21 import instrument, note, stream

    from tools.make_corpus import name_programs
    score = stream.Score()
    for name in ("Violin", "Soprano", None):
        part = stream.Part()
        part.partName = name
        part.insert(0, instrument.Instrument())  # what a score without programs carries
        part.append(note.Note("C4"))
        score.insert(0, part)
    assert name_programs(score) == 2
    programs = [p.getInstrument(returnDefault=False).midiProgram for p in score.parts]
    assert programs == [instrument.Violin().midiProgram, instrument.Soprano().midiProgram, None]
    assert music21.__version__


def test_link_training_takes_the_training_split_and_keeps_held_out_pieces_out(tmp_path):
    from tools.link_training import held_out_files, link
    src = tmp_path / "corpus"
    pieces = [("a/1.mid", "a", "train"), ("a/2.mid", "a", "test"), ("a/3.mid", "a", "train"),
              ("b/1.mid", "b", "train"), ("h/1.mid", "h", "train")]
    for f, _, _ in pieces:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes(b"MThd")
    (src / "manifest.json").write_text(json.dumps({"pieces": [{"file": f, "collection": c, "split": s}
                                                              for f, c, s in pieces]}))
    old = tmp_path / "old.json"  # an earlier model measured itself on a/3.mid
    old.write_text(json.dumps({"pieces": [{"file": "a/3.mid", "split": "validation"}]}))
    linked = link([src], tmp_path / "train", {"h"}, held_out_files([old]))
    assert sorted(e["file"] for e in linked) == ["a/1.mid", "b/1.mid"]
    assert (tmp_path / "train" / "a" / "1.mid").resolve() == (src / "a" / "1.mid").resolve()
    assert link([src], tmp_path / "none", set(), set(), {"a": 1e-9, "b": 1e-9, "h": 1e-9}) == []

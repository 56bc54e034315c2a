"""core.midi: exact round trips through real MIDI files, and the real corpus subset in tests/data/corpus."""
import importlib.util
import io
import json
import os
import pathlib

import mido
import pytest

from core.midi import read_midi, score_to_midifile, write_midi
from core.score import DRUM_CHANNEL, Note, Score, TempoChange, TimeSignature

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "corpus"


def _sample_score() -> Score:
    notes = [
        Note(0, 480, 60, 90, 40), Note(480, 240, 64, 70, 40), Note(720, 960, 67, 127, 40),
        Note(0, 1920, 36, 1, 42), Note(1920, 15, 38, 64, 42),
        Note(0, 120, 36, 100, 0, True), Note(480, 120, 42, 80, 0, True), Note(960, 120, 38, 90, 0, True),
        Note(3840, 480, 0, 50, 0), Note(3840, 480, 127, 50, 0),
        # same pitch overlapping in one instrument: nested, chained and unison
        Note(5760, 1440, 72, 80, 68), Note(6240, 480, 72, 60, 68), Note(6720, 960, 72, 70, 68),
        Note(7680, 480, 74, 80, 68), Note(7680, 480, 74, 80, 68),
    ]
    tempos = [TempoChange(0, 97.3), TempoChange(1920, 140.0), TempoChange(4200, 60.5)]
    meters = [TimeSignature(0, 3, 4), TimeSignature(1440, 6, 8), TimeSignature(4320, 5, 4)]
    return Score(notes, tempos, meters)


def _same(a: Score, b: Score) -> None:
    assert b.notes == a.notes
    assert b.tempos == a.tempos
    assert b.time_signatures == a.time_signatures


def test_write_then_read_is_exact(tmp_path):
    score = _sample_score()
    path = tmp_path / "piece.mid"
    write_midi(score, path)
    back, report = read_midi(path)
    _same(score, back)
    assert not report.altered, str(report)
    assert read_midi(path.read_bytes())[0].notes == back.notes  # bytes and path read alike


def test_file_layout_conductor_then_one_channel_per_instrument():
    mf = score_to_midifile(_sample_score())
    assert mf.type == 1 and mf.ticks_per_beat == 480
    conductor = mf.tracks[0]
    assert [m.type for m in conductor if m.type in ("set_tempo", "time_signature")].count("set_tempo") == 3
    assert not any(m.type in ("note_on", "note_off") for m in conductor)
    channels_by_name: dict[str, set[int]] = {}
    for track in mf.tracks[1:]:
        channels_by_name.setdefault(track.name, set()).update(m.channel for m in track if hasattr(m, "channel"))
        programs = [(m.time, m.program) for m in track if m.type == "program_change"]
        if track.name in ("Violin", "Cello", "Acoustic Grand Piano", "Oboe"):
            assert programs and programs[0][0] == 0  # the program is set at the start of its track
    assert channels_by_name["Drums"] == {DRUM_CHANNEL}
    pitched = [c for name, cs in channels_by_name.items() if not name.startswith("Drums") for c in cs]
    assert DRUM_CHANNEL not in pitched
    # the unison and overlapping oboe notes sit on extra tracks of the oboe's channel
    assert channels_by_name["Oboe"] == channels_by_name["Oboe 2"]
    assert len({frozenset(cs) for name, cs in channels_by_name.items() if not name.startswith("Oboe")}) == 4


def test_more_than_15_pitched_instruments_share_channels_with_program_changes(tmp_path):
    # 20 pitched instruments, each starting its notes on ticks no other instrument uses, plus drums
    notes = [Note(i * 10 + k * 960, 240, 40 + i, 80, program=i * 5) for i in range(20) for k in range(3)]
    notes.append(Note(0, 240, 36, 100, 0, True))
    score = Score(notes)
    write_midi(score, tmp_path / "many.mid")
    mf = mido.MidiFile(tmp_path / "many.mid")
    channels = {m.channel for t in mf.tracks for m in t if hasattr(m, "channel")}
    assert channels == set(range(16))
    back, report = read_midi(tmp_path / "many.mid")
    _same(score, back)
    assert len(back.tracks()) == 21


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "out.mid"
    path.write_bytes(b"old content")
    write_midi(_sample_score(), path)
    assert read_midi(path)[0].notes == _sample_score().notes
    assert os.listdir(tmp_path) == ["out.mid"]  # no temporary file left behind
    with pytest.raises(OSError):
        write_midi(_sample_score(), tmp_path / "missing-dir" / "x.mid")
    assert os.listdir(tmp_path) == ["out.mid"]


def test_values_are_clamped_to_midi_ranges():
    score = Score([Note(0, 0, 60, 0), Note(0, 480, 64, 200), Note(960, 480, 130, 80)])
    buf = io.BytesIO()
    score_to_midifile(score).save(file=buf)
    back, _ = read_midi(buf.getvalue())
    assert [(n.pitch, n.velocity, n.duration) for n in back.notes] == [(60, 1, 1), (64, 127, 480), (127, 80, 480)]


# --- the real corpus subset, built from music21's corpus by
# tools/make_corpus.py --out tests/data/corpus --collections bach essenFolksong ryansMammoth oneills1850 \
#     palestrina haydn/opus74no1 mozart/k155 monteverdi --limit 4
def _manifest() -> dict:
    return json.loads((CORPUS / "manifest.json").read_text())


def test_corpus_subset_is_small_and_varied():
    pieces = _manifest()["pieces"]
    assert len(pieces) >= 30
    assert len({p["collection"] for p in pieces}) >= 3
    assert {"bach", "palestrina", "haydn"} <= {p["collection"] for p in pieces}
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    assert total < 1.5 * 1024 * 1024


def test_corpus_subset_reads_with_plausible_content():
    for piece in _manifest()["pieces"]:
        score, report = read_midi(CORPUS / piece["file"])
        assert len(score.notes) == piece["notes"] > 0, piece["file"]
        assert all(0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 and n.duration >= 1 for n in score.notes)
        pitches = sorted(n.pitch for n in score.notes)
        assert 21 <= pitches[len(pitches) // 2] <= 96, piece["file"]  # the median note is in a singable range
        assert all(20 <= t.bpm <= 300 for t in score.tempos), piece["file"]
        assert all(1 <= m.numerator <= 12 and m.denominator in (1, 2, 4, 8, 16) for m in score.time_signatures)
        assert not any("dropped" in line and "notes" in line for line in report.messages), report


def test_corpus_quartet_has_string_programs():
    score, _ = read_midi(CORPUS / "haydn" / "opus74no1" / "movement2.mid")
    assert {t.program for t in score.tracks()} == {40, 41, 42}  # violin, viola, cello as music21 wrote them
    assert score.time_signatures[0].numerator == 3 and score.time_signatures[0].denominator == 8


def test_corpus_splits_follow_the_hash_of_the_piece_name():
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "tools" / "make_corpus.py")
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)
    for piece in _manifest()["pieces"]:
        assert piece["split"] == make_corpus.split_of(piece["source"])
    splits = [make_corpus.split_of(f"piece{i}") for i in range(2000)]
    assert 0.85 < splits.count("train") / 2000 < 0.95 and splits.count("test") > 50

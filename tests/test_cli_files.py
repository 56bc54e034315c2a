"""`rwkv-music inspect` and `rwkv-music roundtrip` on real MIDI files."""
import pathlib
import subprocess
import sys

import mido

from core.cli import main
from core.midi import read_midi, write_midi
from core.score import Note, Score, TempoChange, TimeSignature
from core.tokenizer import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUARTET = ROOT / "tests" / "data" / "corpus" / "haydn" / "opus74no1" / "movement3.mid"


def _small_piece(path: pathlib.Path) -> pathlib.Path:
    notes = [Note(i * 480, 480, 60 + i % 12, 90, 40) for i in range(16)]
    notes += [Note(i * 960, 960, 36 + i % 5, 70, 32) for i in range(8)]
    notes += [Note(i * 240, 60, 42, 100, 0, True) for i in range(32)]
    score = Score(notes, [TempoChange(0, 100.0), TempoChange(3840, 132.0)],
                  [TimeSignature(0, 4, 4), TimeSignature(3840, 3, 4)])
    write_midi(score, path)
    return path


def test_inspect_lists_tracks_tempo_meter_and_report(tmp_path, capsys):
    path = _small_piece(tmp_path / "small.mid")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tracks: 3" in out
    assert "Violin" in out and "program 40" in out and "C4..B4" in out
    assert "Acoustic Bass" in out and "Drums" in out and "drums" in out
    assert "notes: 56" in out
    assert "duration: 5 bars, 8.4 s" in out  # two 4/4 bars at 100 BPM, then 2 2/3 3/4 bars at 132
    assert "tempo: 100 BPM at bar 1; 132 BPM at bar 3" in out
    assert "meter: 4/4 at bar 1; 3/4 at bar 3" in out
    assert "read report: read as is" in out


def test_inspect_shows_the_read_report_of_a_real_file(capsys):
    assert main(["inspect", str(QUARTET)]) == 0
    out = capsys.readouterr().out
    assert "Violin" in out and "Viola" in out and "Cello" in out
    assert "meter: 3/4 at bar 1" in out
    assert "zero-length notes" in out  # music21 writes grace notes with no length


def test_unreadable_file_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x02\x00\x01\x01\xe0")
    assert main(["inspect", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: type 2 MIDI file (independent sequences) is not supported\n"
    assert captured.out == ""
    assert main(["inspect", str(tmp_path / "missing.mid")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and err.count("\n") == 1


def test_inspect_as_a_subprocess(tmp_path):
    path = _small_piece(tmp_path / "small.mid")
    ok = subprocess.run([sys.executable, "-m", "core.cli", "inspect", str(path)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "notes: 56" in ok.stdout and ok.stderr == ""
    junk = tmp_path / "junk.mid"
    junk.write_bytes(bytes(range(256)) * 4)
    bad = subprocess.run([sys.executable, "-m", "core.cli", "inspect", str(junk)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr == "error: not a MIDI file (no MThd header)\n"  # one line, no traceback


def test_roundtrip_writes_what_the_tokenizer_decodes(tmp_path, capsys):
    out_path = tmp_path / "out.mid"
    assert main(["roundtrip", str(QUARTET), str(out_path)]) == 0
    printed = capsys.readouterr().out
    assert "tempo map: kept" in printed and "meter: kept" in printed and f"wrote {out_path}" in printed
    written, report = read_midi(out_path)
    tokenizer = Tokenizer()
    expected, _ = tokenizer.decode(tokenizer.encode(read_midi(QUARTET)[0]))
    assert written.notes == expected.notes
    assert written.tempos == expected.tempos and written.time_signatures == expected.time_signatures
    assert not report.altered, str(report)
    assert mido.MidiFile(out_path).type == 1


def test_roundtrip_of_an_unreadable_file_exits_2(tmp_path, capsys):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"not midi")
    assert main(["roundtrip", str(junk), str(tmp_path / "out.mid")]) == 2
    assert capsys.readouterr().err.startswith("error: not a MIDI file")
    assert not (tmp_path / "out.mid").exists()

"""Open then save keeps the user's file: `rwkv-music resave` (what the app's open then save does) checked
against an independent reader (mido) on real files, track by track and event by event."""
from __future__ import annotations

import io
import pathlib
from collections import defaultdict, deque
from fractions import Fraction

import mido
import pytest

from core.cli import main
from core.midi import read_midi

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = sorted((ROOT / "tests" / "data" / "corpus").rglob("*.mid"))
POP909 = sorted((ROOT / "tests" / "data" / "pop909").glob("*.mid"))  # MELODY, BRIDGE, PIANO: all program 0
M, Meta = mido.Message, mido.MetaMessage
NOTE_TYPES = ("note_on", "note_off")
MAPS = ("set_tempo", "time_signature", "end_of_track")  # the Score's tempo map and meter; the track end


def reference(source) -> dict:
    """What a MIDI file holds, as mido reads it, in ticks of 480 per beat (exact fractions).

    Notes: first in, first out per track, channel and key; a note-on of a sounding key at the tick it was
    struck sounds once; a note-off with nothing sounding ends a note-on of the key at the same tick
    (a zero-length note written "off, then on"); notes never released end at the track's end."""
    mf = mido.MidiFile(file=io.BytesIO(source)) if isinstance(source, bytes) else mido.MidiFile(source)
    scale = Fraction(480, mf.ticks_per_beat)
    tracks, tempos, meters = [], [], []
    for track in mf.tracks:
        tick, notes, events = 0, [], []
        sounding, spare, early = defaultdict(deque), defaultdict(int), {}
        for msg in track:
            tick += msg.time
            at = tick * scale
            if msg.type in NOTE_TYPES:
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity > 0:
                    if early.pop(key, None) == tick:
                        notes.append((msg.channel, msg.note, at, at, msg.velocity))
                    elif sounding[key] and sounding[key][-1][0] == at:
                        spare[key] += 1
                    else:
                        sounding[key].append((at, msg.velocity))
                elif sounding[key]:
                    start, velocity = sounding[key].popleft()
                    notes.append((msg.channel, msg.note, start, at, velocity))
                elif spare[key]:
                    spare[key] -= 1
                else:
                    early[key] = tick
            elif msg.type == "set_tempo":
                tempos.append((at, msg.tempo))
            elif msg.type == "time_signature":
                meters.append((at, msg.numerator, msg.denominator))
            elif msg.type != "end_of_track":
                events.append((at, bytes(msg.bytes())))
        for (channel, pitch), queue in sounding.items():
            notes += [(channel, pitch, start, tick * scale, velocity) for start, velocity in queue]
        tracks.append({"name": track.name, "notes": sorted(notes), "events": events})
    return {"tracks": tracks, "tempos": _in_force(tempos), "meters": _in_force(meters)}


def _in_force(changes):
    """A tempo map or meter as it sounds: the last change at each tick, changes that repeat dropped."""
    by_tick = {}
    for change in sorted(changes, key=lambda c: c[0]):
        by_tick[change[0]] = change
    out = []
    for change in by_tick.values():
        if not out or change[1:] != out[-1][1:]:
            out.append(change)
    return out


def assert_same_music(original: dict, saved: dict, meter: bool = True) -> None:
    """Every track with its name, notes (pitch, velocity and channel exact; onset within half a tick at 480
    per beat, the end within one: rounding to 480 ticks, and a zero-length note written one tick long),
    every other event (exact bytes, at the tick rounded to 480 per beat, in order), the tempo map and meter."""
    assert len(saved["tracks"]) == len(original["tracks"])
    for i, (a, b) in enumerate(zip(original["tracks"], saved["tracks"])):
        assert b["name"] == a["name"], i
        assert len(b["notes"]) == len(a["notes"]), (i, a["name"])
        for x, y in zip(a["notes"], b["notes"]):
            assert (y[0], y[1], y[4]) == (x[0], x[1], x[4]), (i, x, y)
            assert abs(y[2] - x[2]) <= Fraction(1, 2) and abs(y[3] - x[3]) <= 1, (i, x, y)
        assert [(round(t), data) for t, data in a["events"]] == b["events"], (i, a["name"])
    assert [(round(t), *rest) for t, *rest in original["tempos"]] == saved["tempos"]
    if meter:
        assert [(round(t), *rest) for t, *rest in original["meters"]] == saved["meters"]


def resave(path, tmp_path) -> pathlib.Path:
    out = tmp_path / f"resaved-{pathlib.Path(path).name}"
    assert main(["resave", str(path), str(out)]) == 0
    return out


@pytest.mark.parametrize("path", CORPUS + POP909, ids=lambda p: str(p.relative_to(ROOT / "tests" / "data")))
def test_resave_keeps_every_track_note_and_event(path, tmp_path, capsys):
    original = reference(path)
    out = resave(path, tmp_path)
    printed = capsys.readouterr().out
    assert "wrote" in printed
    # A meter change placed mid-bar moves to the next bar line (reported): the one change the document makes.
    moved = "moved" in printed and "time signature" in printed
    assert_same_music(original, reference(out), meter=not moved)
    if moved:
        assert [(t, n, d) for t, n, d in reference(out)["meters"]] == \
            [(m.tick, m.numerator, m.denominator) for m in read_midi(path)[0].time_signatures]
    assert any(t["events"] for t in original["tracks"])  # the file has events besides notes to keep
    # and a second open then save changes nothing at all
    assert resave(out, tmp_path / "..").read_bytes() == out.read_bytes()


def test_pop909_piano_tracks_keep_their_names_and_pedal(tmp_path):
    path = POP909[0]
    score, report = read_midi(path)
    tracks = score.tracks()
    assert [(t.name, t.channel, t.program) for t in tracks] == [("MELODY", 0, 0), ("BRIDGE", 1, 0), ("PIANO", 2, 0)]
    pedal = [e for e in tracks[2].events if e.is_controller(64)]
    assert len(pedal) == sum(1 for m in mido.MidiFile(path).tracks[3] if m.type == "control_change")
    # the document keeps the keys as they were held; only the tokenizer's view folds the pedal in
    held = sorted((n.start, n.duration, n.pitch) for t in tracks for n in t.notes)
    sounding = sorted((n.start, n.duration, n.pitch) for n in score.notes)
    assert len(held) == len(sounding) and held != sounding
    assert sum(1 for a, b in zip(held, sounding) if a != b) > 100
    assert any("sustain pedal" in line for line in report.messages) and not report.altered
    saved = read_midi(resave(path, tmp_path))[0]
    assert [(t.name, t.channel, t.program, len(t.notes)) for t in saved.tracks()] == \
        [(t.name, t.channel, t.program, len(t.notes)) for t in tracks]
    assert saved.notes == score.notes


def test_type0_file_keeps_channels_controllers_bends_text_and_sysex(tmp_path):
    messages = [Meta("track_name", name="Band"), Meta("set_tempo", tempo=600000), Meta("marker", text="Verse"),
                Meta("key_signature", key="Eb"), M("sysex", data=[0x7E, 0x7F, 0x09, 0x01]),
                M("program_change", channel=0, program=24), M("program_change", channel=1, program=33),
                M("control_change", channel=0, control=7, value=100), M("control_change", channel=0, control=64,
                                                                          value=127),
                M("note_on", channel=0, note=60, velocity=90), M("note_on", channel=1, note=36, velocity=70),
                M("note_on", channel=9, note=42, velocity=100), Meta("lyrics", text="la", time=0),
                M("pitchwheel", channel=1, pitch=-2000, time=120), M("aftertouch", channel=0, value=50),
                M("polytouch", channel=0, note=60, value=30), M("note_off", channel=9, note=42, time=120),
                M("note_off", channel=0, note=60, time=240), M("pitchwheel", channel=1, pitch=0),
                M("control_change", channel=0, control=64, value=0, time=240),
                M("note_off", channel=1, note=36, time=240), Meta("text", text="end", time=480)]
    mf = mido.MidiFile(type=0, ticks_per_beat=96)
    mf.tracks.append(mido.MidiTrack(messages))
    src = tmp_path / "type0.mid"
    mf.save(src)
    score, report = read_midi(src)
    assert [(t.channel, t.program, len(t.notes)) for t in score.tracks()] == [(0, 24, 1), (1, 33, 1), (9, 0, 1)]
    assert score.tracks()[0].name == "Band" and not report.altered
    out = resave(src, tmp_path)
    # saved as type 1: a conductor, then one track per channel; the events and notes of each channel,
    # and the meta events, are the file's
    original, saved = reference(src), reference(out)
    assert [t["name"] for t in saved["tracks"]] == ["Conductor", "Band", "", ""]

    def by_channel(ref):
        notes = sorted(n for t in ref["tracks"] for n in t["notes"])
        events = sorted((round(t), data) for track in ref["tracks"] for t, data in track["events"]
                        if data != bytes(Meta("track_name", name="Conductor").bytes()))
        return notes, events

    assert by_channel(saved) == by_channel(original)
    assert saved["tempos"] == [(0, 600000)]


def test_resave_of_an_unreadable_file_exits_2(tmp_path, capsys):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"not midi")
    assert main(["resave", str(junk), str(tmp_path / "out.mid")]) == 2
    assert capsys.readouterr().err.startswith("error: not a MIDI file")
    assert not (tmp_path / "out.mid").exists()

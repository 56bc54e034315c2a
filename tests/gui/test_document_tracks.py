"""The app's document is the user's file: open then save gives what `rwkv-music resave` gives; edits and
accepted continuations keep every track, its name and its events (real files: POP909 songs, the corpus)."""
from __future__ import annotations

import pathlib
from dataclasses import replace

from core import arrange
from core.cli import main
from core.midi import read_midi, write_midi
from core.score import Note
from musicapp import editing
from musicapp.commands import accept_preview
from musicapp.document import NoteDocument, Preview

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
POP = DATA / "pop909" / "001.mid"  # MELODY, BRIDGE, PIANO (all program 0), CC64 on PIANO
QUARTET = DATA / "corpus" / "haydn" / "opus74no1" / "movement2.mid"  # lyrics, pitch bends, four string parts


def _tracks(score):
    return [(t.name, t.channel, t.program, sorted((n.start, n.duration, n.pitch, n.velocity) for n in t.notes),
             t.events) for t in score.tracks(include_empty=True)]


def test_open_then_save_in_the_app_writes_what_resave_writes(make_window, tmp_path, capsys):
    w = make_window()
    for path in (POP, QUARTET):
        assert main(["resave", str(path), str(tmp_path / "cli.mid")]) == 0
        assert w.open_file(str(path))
        assert w.save_to(str(tmp_path / "app.mid"))
        assert (tmp_path / "app.mid").read_bytes() == (tmp_path / "cli.mid").read_bytes(), path.name
    capsys.readouterr()


def test_the_document_holds_the_notes_as_played_and_each_track(qapp):
    doc = NoteDocument()
    score, _ = read_midi(POP)
    doc.load_score(score)
    assert [t.name for t in doc.tracks] == ["", "MELODY", "BRIDGE", "PIANO"]
    # the notes are the keys as held (the pedal is not folded into the document), each naming its track
    assert sorted((n.start, n.duration, n.pitch, n.track) for n in doc.notes()) == \
        sorted((n.start, n.duration, n.pitch, i) for i, t in enumerate(score.tracks(True)) for n in t.notes)
    assert _tracks(doc.to_score()) == _tracks(score)


def test_edits_keep_each_note_in_its_track(qapp):
    doc = NoteDocument()
    score, _ = read_midi(POP)
    doc.load_score(score)
    bridge = [i for i, n in doc.items() if n.track == 2][:5]
    editing.move(doc, bridge, 480, 2)
    copies = editing.duplicate(doc, bridge)
    saved = doc.to_score()
    names = {t.name: t for t in saved.tracks()}
    assert len(names["BRIDGE"].notes) == len(score.tracks()[1].notes) + 5
    assert len(names["MELODY"].notes) == len(score.tracks()[0].notes)
    assert names["PIANO"].events == score.tracks()[2].events
    assert all(doc.note(i).track == 2 for i in copies)


def test_accepted_notes_go_to_a_track_of_their_instrument_and_disturb_no_other(qapp):
    score, _ = read_midi(POP)
    end = max(n.end for t in score.tracks() for n in t.notes)
    start = arrange.bar_line_at_or_after(score, end)
    piano = [Note(start + k * 240, 240, 60 + k, 90) for k in range(8)]
    violin = [Note(start + k * 480, 480, 72 + k, 80, program=40) for k in range(4)]
    for mode in (arrange.REPLACE, arrange.INSERT):
        doc = NoteDocument()
        doc.load_score(score)
        doc.set_placement(mode)
        doc.set_preview(Preview({0: piano + violin}, 0, start, start + 1920 * 2))
        exported = doc.to_score(include_preview=True)  # what Export writes before accepting
        accept_preview(doc)
        saved = doc.to_score()
        assert _tracks(saved) == _tracks(exported), mode
        before, after = _tracks(score), _tracks(saved)
        assert [t[0] for t in after] == ["", "MELODY", "BRIDGE", "PIANO", "Violin"]
        # the piano notes join the piano tracks (core.voices says which); the violin gets a new track;
        # nothing else changes
        assert sorted(x for t in after[1:4] for x in t[3]) == sorted(
            [x for t in before[1:4] for x in t[3]] + [(n.start, n.duration, n.pitch, n.velocity) for n in piano])
        assert [t[:3] + t[4:] for t in after[:4]] == [t[:3] + t[4:] for t in before]
        assert all(set(b[3]) <= set(a[3]) for a, b in zip(after, before))
        assert after[4][3] == [(n.start, n.duration, n.pitch, n.velocity) for n in violin] and after[4][2] == 40
        doc.undo_stack.undo()
        assert _tracks(doc.to_score()) == before


def test_accepting_a_continuation_puts_each_note_in_the_part_it_continues(qapp, tmp_path):
    """The true next 8 bars of a pop song, as a continuation without tracks: Accept puts them back in
    MELODY, BRIDGE and PIANO (most in their own), and saving adds no track ("MELODY 2")."""
    score, _ = read_midi(POP)
    bars = score.bar_starts()
    start, end = bars[24], bars[32]
    names = [t.name for t in score.tracks(True)]
    truth = {(n.start, n.pitch): names[i] for i, t in enumerate(score.tracks(True)) for n in t.notes
             if start <= n.start < end}
    prompt = score.slice(0, start)
    doc = NoteDocument()
    doc.load_score(prompt)
    new = [Note(n.start, n.duration, n.pitch, n.velocity) for t in score.tracks() for n in t.notes
           if start <= n.start < end]
    doc.set_preview(Preview({0: new}, 0, start, end))
    accept_preview(doc)
    path = tmp_path / "accepted.mid"
    write_midi(doc.to_score(), path)
    back, _ = read_midi(path)
    assert [t.name for t in back.tracks()] == ["MELODY", "BRIDGE", "PIANO"]
    placed = {(n.start, n.pitch): t.name for t in back.tracks() for n in t.notes if start <= n.start < end}
    right = sum(placed.get(k) == v for k, v in truth.items()) / len(truth)
    assert right >= 0.7, right  # every note in MELODY (the first track of program 0) gave 26%
    assert sum(v == "MELODY" for v in truth.values()) / len(truth) < 0.4


def test_inserting_bars_moves_the_events_after_them_with_their_notes(qapp):
    score, _ = read_midi(POP)
    piano = score.tracks()[2]
    pedal_ticks = [e.tick for e in piano.events if e.is_controller(64)]
    start = arrange.bar_line_at_or_after(score, pedal_ticks[len(pedal_ticks) // 2])
    length = 2 * score.time_signature_at(start).bar_ticks
    doc = NoteDocument()
    doc.load_score(score)
    doc.set_placement(arrange.INSERT)
    doc.set_preview(Preview({0: [Note(start, 240, 60, 90, program=40)]}, 0, start, start + length))
    accept_preview(doc)
    saved = {t.name: t for t in doc.to_score().tracks()}
    assert [e.tick for e in saved["PIANO"].events if e.is_controller(64)] == \
        [t + length if t >= start else t for t in pedal_ticks]
    # every piano note keeps the pedal it was played with: the tokenizer's view moves as a whole
    moved = [replace(n, start=n.start + length) if n.start >= start else n for n in piano.notes]
    assert sorted((n.start, n.pitch) for n in saved["PIANO"].notes) == sorted((n.start, n.pitch) for n in moved)
    doc.undo_stack.undo()
    assert [t.events for t in doc.tracks] == [t.events for t in score.tracks(True)]

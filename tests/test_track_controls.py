"""core.tracks, without Qt: the track each note is saved in, what plays under mute and solo, and changing a
track's instrument (real files: a POP909 song read and written through core.midi)."""
from __future__ import annotations

import pathlib
from collections import Counter

import pytest

from core import tracks as tc
from core.midi import read_midi, score_to_bytes
from core.score import Event, Note, Score, Track

POP = pathlib.Path(__file__).resolve().parent / "data" / "pop909" / "001.mid"  # "", MELODY, BRIDGE, PIANO


def pop():
    return read_midi(POP)[0]


def pitches(notes):
    return Counter((n.start, n.pitch) for n in notes)


def reread(score: Score) -> Score:
    return read_midi(score_to_bytes(score))[0]


def pedal(tick, down, channel):
    return Event(tick, bytes((0xB0 | channel, 64, 127 if down else 0)))


# --- which track a note is saved in ----------------------------------------------------------------
def test_assign_puts_each_note_where_the_saved_file_has_it():
    score = pop()
    notes = dict(enumerate(score.document_notes()))
    orphans = {"violin": Note(0, 480, 70, program=40), "piano": Note(0, 480, 72)}  # the model's: no track
    piece, placed = tc.assign(score.skeleton(), {**notes, **orphans})
    assert all(placed[k] == n.track for k, n in notes.items())
    assert placed["piano"] == 1  # the first piano track (MELODY), as Score.add_notes decides
    assert placed["violin"] == 4 and piece.tracks(include_empty=True)[4].name == "Violin"
    assert [t.name for t in piece.tracks()] == ["MELODY", "BRIDGE", "PIANO", "Violin"]


# --- mute and solo -----------------------------------------------------------------------------------
def test_a_muted_track_does_not_play_and_the_others_play_as_before():
    score = pop()
    melody, bridge, piano = score.tracks()
    heard = tc.audible_score(score, muted={3})
    assert pitches(heard.notes) == pitches(melody.notes + bridge.notes)
    # the pedal lives on PIANO's channel only: the other tracks' durations are as written
    assert sorted((n.start, n.pitch, n.duration) for n in heard.notes) == \
        sorted((n.start, n.pitch, n.duration) for n in melody.notes + bridge.notes)
    assert pitches(tc.audible_score(score).notes) == pitches(score.notes)  # nothing muted: everything
    assert pitches(score.notes) != pitches(heard.notes)


def test_solo_plays_only_the_soloed_tracks_and_mute_wins_over_solo():
    score = pop()
    melody, bridge, piano = score.tracks()
    assert pitches(tc.audible_score(score, soloed={1}).notes) == pitches(melody.notes)
    assert pitches(tc.audible_score(score, soloed={1, 2}).notes) == pitches(melody.notes + bridge.notes)
    assert tc.audible_score(score, muted={1}, soloed={1}).notes == []
    assert pitches(tc.audible_score(score, muted={1}, soloed={1, 3}).notes) == pitches(tc.audible_score(
        score, soloed={3}).notes)
    assert not tc.is_audible(0, muted={0}, soloed={0}) and tc.is_audible(2, muted={1}, soloed=())


def test_a_pedal_on_a_muted_track_still_holds_the_other_tracks_notes_on_its_channel():
    pedal_track = Track("Pedal", 0, 0, False, [Note(0, 100, 40)], [pedal(0, True, 0), pedal(1920, False, 0)])
    keys = Track("Keys", 0, 0, False, [Note(0, 240, 60)])
    score = Score((), tracks=[pedal_track, keys])
    heard = tc.audible_score(score, muted={0})
    assert [(n.pitch, n.duration) for n in heard.notes] == [(60, 1920)]


def test_the_new_track_of_the_models_notes_keeps_its_mute_when_another_instrument_arrives():
    score = pop()
    document = score.skeleton()
    violin = Note(0, 480, 70, program=40)
    guitar = Note(480, 480, 64, program=24)
    muted = {("new", 40, False)}
    for orphans in ([violin], [violin, guitar]):  # the guitar's track comes before the violin's (by program)
        piece, _ = tc.assign(document, dict(enumerate(score.document_notes() + orphans)))
        keys = tc.track_keys(piece, len(document))
        assert keys[:4] == [0, 1, 2, 3] and ("new", 40, False) in keys
        heard = tc.audible_score(piece, muted, document_tracks=len(document))
        assert (0, 70) not in pitches(heard.notes)
        assert len(heard.notes) == len(score.notes) + len(orphans) - 1


# --- instrument --------------------------------------------------------------------------------------
def test_changing_the_instrument_of_a_track_rewrites_its_program_and_nothing_else():
    score = pop()
    tracks = score.tracks(include_empty=True)
    changed = tc.set_program(tracks, 3, 40)
    assert changed[3].program == 40 and {n.program for n in changed[3].notes} == {40}
    assert tracks[3].program == 0 and {n.program for n in tracks[3].notes} == {0}  # the input stays as it was
    assert [e for e in changed[3].events if e.kind != 0xC0] == [e for e in tracks[3].events if e.kind != 0xC0]
    back = reread(Score((), list(score.tempos), list(score.time_signatures), tracks=changed))
    assert [(t.name, t.channel, t.program, {n.program for n in t.notes}) for t in back.tracks()] == [
        ("MELODY", 0, 0, {0}), ("BRIDGE", 1, 0, {0}), ("PIANO", 2, 40, {40})]
    assert pitches(back.tracks()[2].notes) == pitches(tracks[3].notes)
    assert Counter(n.program for n in back.notes) == {0: len(tracks[1].notes) + len(tracks[2].notes),
                                                      40: len(tracks[3].notes)}  # the tokenizer's view


def test_a_track_sharing_its_channel_moves_to_a_free_one_with_its_controllers():
    a = Track("A", 0, 0, False, [Note(0, 480, 60)], [Event(0, bytes((0xC0, 0)))])
    b = Track("B", 0, 0, False, [Note(0, 240, 48)], [pedal(0, True, 0), pedal(960, False, 0)])
    changed = tc.set_program([a, b], 1, 33)
    assert changed[1].channel == 1 and changed[0].channel == 0
    back = reread(Score((), tracks=changed))
    got = {t.name: t for t in back.tracks()}
    assert (got["A"].program, got["B"].program) == (0, 33)
    assert [e.data for e in got["B"].events if e.is_controller(64)] == [b"\xb1\x40\x7f", b"\xb1\x40\x00"]
    # the pedal still holds B's note, and only B's
    assert sorted((n.pitch, n.duration, n.program) for n in back.notes) == [(48, 960, 33), (60, 480, 0)]


def test_a_program_change_in_a_conductor_track_is_rewritten_too():
    conductor = Track("", None, 0, False, [], [Event(0, bytes((0xC0, 5)))])
    melody = Track("Melody", 0, 5, False, [Note(0, 480, 60, program=5)])
    changed = tc.set_program([conductor, melody], 1, 71)
    assert changed[0].events == [Event(0, bytes((0xC0, 71)))] and changed[1].events == []
    assert [(n.program, n.pitch) for n in reread(Score((), tracks=changed)).notes] == [(71, 60)]


def test_a_track_without_a_program_change_gets_one_at_its_start():
    melody = Track("Melody", 3, 0, False, [Note(480, 480, 60)], [Event.meta(0, 0x03, b"Melody")])
    changed = tc.set_program([melody], 0, 19)
    assert changed[0].events == [Event.meta(0, 0x03, b"Melody"), Event(0, bytes((0xC3, 19)))]
    assert [n.program for n in reread(Score((), tracks=changed)).notes] == [19]


def test_bad_instrument_changes_are_refused_clearly():
    drums = Track("Drums", 9, 0, True, [Note(0, 60, 36, drum=True)])
    with pytest.raises(ValueError, match="drum"):
        tc.set_program([drums], 0, 5)
    with pytest.raises(ValueError, match="0..127"):
        tc.set_program(pop().tracks(), 0, 128)
    with pytest.raises(ValueError, match="no track 7"):
        tc.set_program(pop().tracks(), 7, 1)
    crowded = [Track(f"T{c}", c, 0, False, [Note(0, 480, 60)]) for c in tc.PITCHED_CHANNELS]
    crowded.append(Track("Twin", 0, 0, False, [Note(0, 480, 64)]))
    with pytest.raises(ValueError, match="no channel is free"):
        tc.set_program(crowded, len(crowded) - 1, 40)

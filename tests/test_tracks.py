"""core.score's document model: tracks keep their notes and events; the tokenizer's view folds the pedal and
merges instruments; notes the model writes go to a track of their instrument (core.generate, core.arrange)."""
from __future__ import annotations

import pathlib

from core import arrange
from core.generate import Generator
from core.midi import read_midi
from core.network.model import ModelConfig, RWKV7
from core.score import MIN_NOTE_TICKS, Event, Note, Score, Track
from core.tokenizer import Tokenizer

POP = pathlib.Path(__file__).resolve().parent / "data" / "pop909" / "001.mid"


def pedal(tick: int, down: bool, channel: int = 0) -> Event:
    return Event(tick, bytes((0xB0 | channel, 64, 127 if down else 0)))


def spans(notes):
    return sorted((n.start, n.duration, n.pitch) for n in notes)


def test_a_score_made_of_notes_has_one_track_per_instrument():
    score = Score([Note(0, 480, 60), Note(0, 480, 40, program=32), Note(480, 480, 62), Note(0, 60, 36, drum=True)])
    assert [(t.name, t.program, t.drum, len(t.notes)) for t in score.tracks()] == [
        ("Acoustic Grand Piano", 0, False, 2), ("Acoustic Bass", 32, False, 1), ("Drums", 0, True, 1)]
    assert len(score.notes) == 4


def test_the_view_folds_the_pedal_per_channel_and_the_document_does_not():
    melody = Track("melody", 0, 0, False, [Note(0, 240, 72), Note(960, 240, 74)])
    piano = Track("piano", 1, 0, False, [Note(0, 240, 48), Note(240, 240, 48), Note(960, 0, 50)],
                  [pedal(0, True, 1), pedal(1920, False, 1)])
    score = Score((), tracks=[melody, piano])
    assert spans(score.tracks()[1].notes) == [(0, 240, 48), (240, 240, 48), (960, 0, 50)]
    # channel 1's pedal holds its notes until the key is struck again or the pedal lifts; channel 0 is free;
    # a zero-length note gets the minimum length
    assert spans(score.notes) == [(0, 240, 48), (0, 240, 72), (240, 1680, 48), (960, 240, 74),
                                  (960, 960, 50)]
    alone = Score((), tracks=[melody, Track("p", 1, 0, False, [Note(960, 0, 50)])])
    assert (960, MIN_NOTE_TICKS, 50) in spans(alone.notes)


def test_notes_go_to_the_track_they_name_else_to_their_instrument_else_to_a_new_track():
    melody = Track("MELODY", 0, 0, False, [Note(0, 480, 72)])
    bridge = Track("BRIDGE", 1, 0, False, [Note(0, 480, 64)])
    setup = Track("setup", 5, 71, False, [], [Event(0, bytes((0xC5, 71)))])  # a program change, no notes
    score = Score((), tracks=[Track("conductor"), melody, bridge, setup])
    score.add_notes([Note(480, 480, 74), Note(480, 480, 65, track=2), Note(480, 480, 50, program=32),
                     Note(960, 480, 52, program=32), Note(0, 60, 36, drum=True), Note(0, 480, 60, program=71),
                     Note(480, 480, 76, program=40, track=2)])  # a violin note cannot sound on BRIDGE
    assert [(t.name, spans(t.notes)) for t in score.tracks(include_empty=True)] == [
        ("conductor", []), ("MELODY", [(0, 480, 72), (480, 480, 74)]), ("BRIDGE", [(0, 480, 64), (480, 480, 65)]),
        ("setup", []), ("Acoustic Bass", [(480, 480, 50), (960, 480, 52)]), ("Violin", [(480, 480, 76)]),
        ("Clarinet", [(0, 480, 60)]), ("Drums", [(0, 60, 36)])]


def test_a_slice_keeps_the_tracks_and_the_state_in_force_at_its_start():
    piano = Track("piano", 2, 0, False, [Note(0, 480, 48), Note(1920, 240, 50), Note(2400, 240, 52)],
                  [Event(0, bytes((0xC2, 5))), Event(0, bytes((0xB2, 7, 90))), pedal(960, True, 2),
                   Event(1000, bytes((0xB2, 7, 60))), pedal(2880, False, 2), Event.meta(1920, 0x06, b"B")])
    cut = Score((), tracks=[piano]).slice(1920, 3840)
    (track,) = cut.tracks()
    assert track.name == "piano" and track.channel == 2
    assert [(e.tick, e.data) for e in track.events] == [
        (0, bytes((0xC2, 5))), (0, bytes((0xB2, 64, 127))), (0, bytes((0xB2, 7, 60))), (0, b"\xff\x06B"),
        (960, bytes((0xB2, 64, 0)))]
    assert spans(cut.notes) == [(0, 960, 50), (480, 480, 52)]  # held by the pedal (down before the cut) until it lifts


def test_inserting_bars_keeps_a_held_pedal_off_the_new_bars():
    piano = Track("PIANO", 2, 0, False, [Note(0, 480, 48), Note(1920, 240, 50)], [pedal(0, True, 2),
                                                                                 pedal(2400, False, 2)])
    piece = Score((), tracks=[piano])
    placed = arrange.placed_score(piece, [Note(960, 240, 72, program=40)], 960, 960 + 3840, arrange.INSERT)
    piano_after = placed.tracks()[0]
    assert [(e.tick, e.data[2]) for e in piano_after.events] == [(0, 127), (960, 0), (4800, 127), (6240, 0)]
    view = {(n.start, n.pitch): n.duration for n in placed.notes}
    # the first note is held until the insertion point only; the moved one keeps its pedal
    assert view[(0, 48)] == 960 and view[(5760, 50)] == 480 and view[(960, 72)] == 240
    assert [t.name for t in placed.tracks()] == ["PIANO", "Violin"]


def test_a_continuation_merges_into_the_prompts_tracks():
    tok = Tokenizer()
    gen = Generator(RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=tok.vocab_size)), tok)
    score, _ = read_midi(POP)
    stream = gen.stream(score, bars=2, at_tick=16 * 480)  # the window is built; nothing is sampled here
    bar = score.time_signature_at(stream.start_tick).bar_ticks
    assert stream.start_tick == 16 * 480 // bar * bar
    merged = stream.score([Note(stream.start_tick, 480, 60, 90), Note(stream.start_tick, 480, 76, 80, 40)])
    before = score.slice(0, stream.requested_tick)
    assert [t.name for t in merged.tracks(include_empty=True)] == ["", "MELODY", "BRIDGE", "PIANO", "Violin"]
    # the piano note joins a piano track that plays before it (core.voices says which; the melody starts later)
    assert [t.name for t in before.tracks()] == ["BRIDGE", "PIANO"]
    after = {t.name: t for t in merged.tracks(True)}
    home = next(t.name for t in merged.tracks() if (stream.start_tick, 480, 60) in spans(t.notes))
    assert home in ("BRIDGE", "PIANO")
    assert spans(after[home].notes) == spans(before.tracks(True)[[t.name for t in before.tracks(True)].index(home)].notes) \
        + [(stream.start_tick, 480, 60)]
    for b in before.tracks(True):
        if b.name != home:
            assert (spans(after[b.name].notes), after[b.name].events) == (spans(b.notes), b.events)
    assert spans(after["Violin"].notes) == [(stream.start_tick, 480, 76)] and after["Violin"].program == 40
    assert merged.time_signatures == before.time_signatures


def test_the_token_view_is_one_track_per_instrument_without_events():
    score, _ = read_midi(POP)
    view = score.token_view()
    assert [t.name for t in view.tracks()] == ["Acoustic Grand Piano"]
    assert spans(view.notes) == spans(score.notes)
    assert not any(t.events for t in view.tracks(True))

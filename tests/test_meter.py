"""core.meter: the model reads the meter the music has where the file's cannot be right (a bar line on
every beat), the document and the saved file keep the file's, and nothing changes for plausible meters."""
from __future__ import annotations

import pathlib

import pytest

from core.evaluate.files import evaluate_files, sequence_nll_bits
from core.generate import Generator
from core.meter import grid_shift, implausible_meter, infer_meter, model_meter
from core.midi import read_midi, score_to_bytes, write_midi
from core.paths import base_model
from core.score import Note, Score, TimeSignature
from core.tokenizer import Tokenizer

DATA = pathlib.Path(__file__).resolve().parent / "data"
SONG = DATA / "pop909" / "097.mid"  # declares 1/4 throughout; annotated downbeats: beat 3, then every 4 beats;
# every onset 24 ticks past a 16th of the file (POP909's raw files are quantised to a grid of their own)
PLAUSIBLE = sorted((DATA / "corpus").rglob("*.mid")) + [DATA / "pop909" / "001.mid"]  # chorales, folk... 2/4


def test_a_file_in_1_4_is_read_in_4_4_from_its_annotated_downbeat_with_its_notes_on_the_grid():
    score, report = read_midi(SONG)
    assert [(t.numerator, t.denominator) for t in score.time_signatures] == [(1, 4)]  # the document: as written
    view = score.token_view()
    assert view.view_shift == 96  # 24 + 96: the notes' 16ths on the tokenizer's
    assert sum(n.start % 120 == 0 for n in view.notes) > 0.8 * len(view.notes)  # 86%: the rest unquantised
    # the annotated downbeat, beat 3 (tick 960, the music's at 984), in the view: 984 + 96
    assert [(t.tick, t.numerator, t.denominator) for t in view.time_signatures] == [(0, 9, 16), (1080, 4, 4)]
    declared = score.token_view(infer_meter=False)
    assert declared.view_shift == 0
    assert [(n.start - 96, n.duration, n.pitch) for n in view.notes] == [(n.start, n.duration, n.pitch)
                                                                         for n in declared.notes]
    assert view.tempos[0].tick == 0 and [t.tick - 96 for t in view.tempos[1:]] == [t.tick for t in score.tempos[1:]]
    assert ("meter 1/4 throughout looks like a beat, not a bar: the model reads it as 4/4 from beat 3, its notes "
            "96 ticks later to fall on the grid (the piece keeps its meter)") in report.messages
    assert not report.altered


def test_open_then_save_keeps_the_declared_meter(tmp_path):
    score, _ = read_midi(SONG)
    out = tmp_path / "saved.mid"
    write_midi(score, out)
    again, _ = read_midi(out)
    assert again.time_signatures == score.time_signatures == [TimeSignature(0, 1, 4)]
    assert score_to_bytes(again) == out.read_bytes()


@pytest.mark.parametrize("path", PLAUSIBLE, ids=lambda p: p.name)
def test_a_plausible_meter_reaches_the_model_unchanged(path):
    score, report = read_midi(path)
    view = score.token_view()
    assert view.time_signatures == score.time_signatures and view.view_shift == 0
    tok = Tokenizer()
    assert tok.encode(view) == tok.encode(score.token_view(infer_meter=False)) == tok.encode(score)
    assert not any("the model reads it as" in m for m in report.messages)


def test_implausible_means_many_bars_of_a_beat_or_less():
    assert implausible_meter([TimeSignature(0, 1, 4)], 40 * 480)
    assert implausible_meter([TimeSignature(0, 1, 8)], 40 * 480)
    assert implausible_meter([TimeSignature(0, 4, 4), TimeSignature(1920, 1, 4)], 40 * 480)
    assert not implausible_meter([TimeSignature(0, 1, 4), TimeSignature(480, 4, 4)], 400 * 480)  # a pickup
    assert not implausible_meter([TimeSignature(0, 1, 4)], 6 * 480)  # a few beats: nothing to go on
    for n, d in ((2, 4), (3, 4), (4, 4), (6, 8), (2, 2), (3, 8)):
        assert not implausible_meter([TimeSignature(0, n, d)], 400 * 480)


def _song(beats_per_bar: int, pickup_beats: int, bars: int = 24) -> list[Note]:
    """A bass on every downbeat, a chord per bar, a melody in eighths; a pickup before the first bar."""
    notes, bar = [], beats_per_bar * 480
    chords = ((48, 52, 55), (53, 57, 60), (55, 59, 62), (45, 48, 52))
    for i in range(pickup_beats * 2):
        notes.append(Note(i * 240, 200, 72, 60))
    start = pickup_beats * 480
    for b in range(bars):
        t = start + b * bar
        chord = chords[b % len(chords)]
        notes.append(Note(t, bar - 20, chord[0] - 12, 100))
        notes += [Note(t, bar - 20, p, 90) for p in chord]
        notes += [Note(t + k * 240, 200, 72 + (k * 5 + b) % 7, 70) for k in range(beats_per_bar * 2)]
    return notes


@pytest.mark.parametrize("beats,pickup", [(4, 1), (4, 3), (3, 0), (4, 0)])
def test_the_bar_and_the_pickup_come_from_the_notes(beats, pickup):
    guess = infer_meter(_song(beats, pickup))
    assert guess.beats in (beats, 2 * beats)
    assert guess.downbeat % (beats * 480) == pickup * 480 % (beats * 480)


def test_an_exported_performance_in_1_8_is_read_with_its_pickup():
    notes = _song(4, 1)
    score = Score(notes, None, [TimeSignature(0, 1, 8)])
    view = score.token_view()
    assert [(t.tick, t.numerator, t.denominator) for t in view.time_signatures] == [(0, 1, 4), (480, 4, 4)]
    assert model_meter(score.time_signatures, score.notes).describe().startswith(
        "meter 1/8 throughout looks like a beat, not a bar: the model reads it as 4/4 from beat 2")
    # The same notes in a plausible meter are left alone, even where the notes suggest another downbeat.
    assert Score(notes, None, [TimeSignature(0, 4, 4)]).token_view().time_signatures == [TimeSignature(0, 4, 4)]


@pytest.fixture(scope="module")
def bundled():
    return str(base_model())


def test_the_bundled_model_reads_the_inferred_meter_better(bundled):
    """rwkv-music eval (the model's view) against the same file read in its declared 1/4."""
    result = evaluate_files(bundled, [str(SONG)], device="cpu")
    inferred = result["bits_per_note"]
    from core.network.checkpoint import load_checkpoint
    model, meta = load_checkpoint(bundled, device="cpu")
    tok = Tokenizer.from_dict(meta["tokenizer"])
    ids = tok.encode(read_midi(SONG)[0].token_view(infer_meter=False))
    declared = sequence_nll_bits(model, ids) / sum(1 for t in ids if t in tok.ids_of_kind("pitch"))
    # measured: 10.43 (11.23 without the grid shift) against 13.69
    assert inferred < declared - 1.5, (inferred, declared)


def test_a_continuation_of_a_1_4_file_starts_on_a_downbeat_of_the_model(bundled):
    """core.generate works on prompt.token_view(): the continuation opens on the model's bar line at or
    after the requested tick, and its N bars are counted in the document's bars (here beats); what it
    returns is in the document's ticks, on the file's own grid (24 ticks past its 16ths)."""
    score, _ = read_midi(SONG)
    gen = Generator.load(bundled)
    request = 21 * 480  # a beat after a downbeat of the model's 4/4 (the music's: 984 + 1920k, beats 3, 7, 11...)
    stream = gen.stream(score, at_tick=request, bars=2)
    assert stream.start_tick == 22 * 480 + 24  # the next downbeat, not the document's next bar line (the next beat)
    view = score.token_view()
    assert view.from_document(stream.start_tick) in view.bar_starts(view.from_document(stream.start_tick))
    assert stream.end_tick - stream.start_tick == 2 * 480  # two bars of the document's 1/4
    notes = [item.note for item in stream]
    assert notes and all(stream.start_tick <= n.start < stream.end_tick for n in notes)
    assert all((n.start - 24) % 20 == 0 for n in notes)  # the tokenizer's grid (steps of 20 ticks) on the file's


def _file_without_meter(notes: list[Note]) -> bytes:
    """A type 0 file of the notes with a tempo and no time signature, as a keyboard recording is written."""
    import io

    import mido
    events = [(n.start, mido.Message("note_on", note=n.pitch, velocity=n.velocity)) for n in notes]
    events += [(n.end, mido.Message("note_off", note=n.pitch, velocity=0)) for n in notes]
    track, now = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]), 0
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        track.append(msg.copy(time=tick - now))
        now = tick
    data = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track]).save(file=data)
    return data.getvalue()


def test_a_file_without_a_meter_is_read_with_the_pickup_its_notes_have(tmp_path):
    import mido
    data = _file_without_meter(_song(4, 3))
    score, report = read_midi(data)
    assert score.time_signatures == [TimeSignature(0, 4, 4)] and not score.time_signatures[0].declared
    assert [(t.tick, t.numerator, t.denominator) for t in score.token_view().time_signatures] == \
        [(0, 3, 4), (1440, 4, 4)]
    assert "no meter in the file: the model reads it as 4/4 from beat 4 (the piece keeps its meter)" \
        in report.messages
    out = tmp_path / "saved.mid"
    write_midi(score, out)  # saved as it was: still without a meter, and read the same way again
    assert not [m for t in mido.MidiFile(out).tracks for m in t if m.type == "time_signature"]
    again, _ = read_midi(out)
    assert again.token_view().time_signatures == score.token_view().time_signatures
    # a file without a meter whose notes are in 4/4 from the start: nothing to say, nothing changes
    plain, report = read_midi(_file_without_meter(_song(4, 0)))
    assert plain.token_view().time_signatures == [TimeSignature(0, 4, 4)]
    assert not any("the model reads it as" in m for m in report.messages)


def test_a_performance_shifted_off_the_grid_is_read_on_its_beats_but_a_jittered_one_is_left_alone():
    import random
    notes = _song(4, 0)
    shifted = Score([Note(n.start + 200, n.duration, n.pitch, n.velocity) for n in notes], None,
                    [TimeSignature(0, 4, 4)])
    guess = model_meter(shifted.time_signatures, shifted.notes)
    assert guess is not None and guess.reason.startswith("the beats fall 0.42 of a beat after those of the meter")
    view = shifted.token_view()
    assert view.view_shift == 40  # the notes' 16ths (200 = 80 past one) on the tokenizer's
    assert [(t.tick, t.numerator, t.denominator) for t in view.time_signatures] == \
        [(0, 1, 8), (240, 4, 4)]  # the downbeat at 200 + 40 ticks (a pickup of an 8th)
    rng = random.Random(1)  # a live phrase: late by 80 ticks on average, unsteady by 25 (a jam's capture)
    live = Score([Note(max(0, n.start + 80 + round(rng.gauss(0, 25))), n.duration, n.pitch, n.velocity)
                  for n in notes], None, [TimeSignature(0, 4, 4)])
    assert live.token_view().time_signatures == [TimeSignature(0, 4, 4)] and live.token_view().view_shift == 0


def test_the_grid_shift_moves_only_notes_on_a_16th_grid_of_their_own():
    import random
    notes = _song(4, 0)

    def later(ticks: int, of=notes) -> list[Note]:
        return [Note(n.start + ticks, n.duration, n.pitch, n.velocity) for n in of]

    assert grid_shift(notes) == 0
    assert grid_shift(later(62)) == 58 and grid_shift(later(200)) == 40  # onto the next 16th: never earlier
    assert grid_shift(later(5)) == 0  # within GRID_SLACK: on the file's grid (the tokenizer's steps take it)
    # a shuffle, most notes on the beat's last 8th triplet (320: 80 past a 16th): its mean phase within a
    # 16th is off the grid, but more of its notes are on the file's triplets than on that phase's 16ths
    shuffle = [Note(b * 480 + (320 if k else 0), 100, 60 + k, 80) for b in range(40) for k in range(4)]
    assert grid_shift(shuffle) == 0
    rng = random.Random(2)  # a live phrase, unsteady by 25 ticks: on no grid
    assert grid_shift([Note(max(0, n.start + 62 + round(rng.gauss(0, 25))), n.duration, n.pitch, n.velocity)
                       for n in notes]) == 0

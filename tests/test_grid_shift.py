"""The model's view puts the music's grid on the tokenizer's (core.meter.grid_shift, Score.token_view): a
file quantised to a 16th grid of its own, off the file's (as POP909's raw files are), is read by the model
as the same piece on the grid, and what the model writes lands on the file's own grid, in the document's
ticks. The document never moves. Real MIDI files (written with mido), the real tokenizer, a tiny real model."""
from __future__ import annotations

import io
import json

import mido
import pytest

from core.cli import main as cli_main
from core.evaluate.files import evaluate_files
from core.generate import SamplingConfig
from core.infill import infill, token_bar_lines
from core.midi import read_midi
from core.score import TICKS_PER_BEAT, Note
from core.tokenizer import STEP_TICKS, Tokenizer

BAR = 4 * TICKS_PER_BEAT
SIXTEENTH = TICKS_PER_BEAT // 4
BARS = 12
FIRST = BAR  # the song starts after a bar of rest, so that it can be moved earlier by under a 16th
TEMPO_CHANGE = FIRST + 8 * BAR  # 100 BPM, then 90 from bar 9 of the song


def song() -> list[Note]:
    """On the file's grid, in 4/4 from FIRST: a bass note and a chord on every downbeat, a melody of 8ths
    and 16ths."""
    notes = []
    chords = ((48, 52, 55), (53, 57, 60), (55, 59, 62), (45, 48, 52))
    for b in range(BARS):
        t = FIRST + b * BAR
        chord = chords[b % len(chords)]
        notes.append(Note(t, BAR - 20, chord[0] - 12, 100))
        notes += [Note(t, BAR - 20, p, 80) for p in chord]
        steps = (0, 2, 3, 4, 6, 8, 10, 11, 12, 14)  # in 16ths
        notes += [Note(t + s * SIXTEENTH, SIXTEENTH, 72 + (s * 5 + b) % 7, 70) for s in steps]
    return notes


def midi_file(notes: list[Note], earlier: int, meter: tuple[int, int] | None) -> bytes:
    """A type 1 file (480 ticks a beat) of the notes and the tempo change moved `earlier` ticks earlier,
    declaring `meter` at tick 0 (None: no time signature)."""
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100), time=0)])
    if meter is not None:
        conductor.append(mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=TEMPO_CHANGE - earlier))
    events = [(n.start - earlier, 1, mido.Message("note_on", note=n.pitch, velocity=n.velocity)) for n in notes]
    events += [(n.end - earlier, 0, mido.Message("note_off", note=n.pitch, velocity=0)) for n in notes]
    track, now = mido.MidiTrack(), 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    data = io.BytesIO()
    mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, tracks=[conductor, track]).save(file=data)
    return data.getvalue()


# (the declared meter, how far off the grid the copy is): POP909's 1/4 and 62 ticks; a 4/4 whose beats
# fall between the file's (core.meter.off_grid_phase); no meter at all
CASES = [((1, 4), 62), ((4, 4), 100), (None, 62)]


@pytest.fixture(scope="module", params=CASES, ids=["1-4", "4-4", "no-meter"])
def pair(request, tmp_path_factory):
    """(offset, the song on its grid, the song `offset` ticks earlier: off the grid) as read from files."""
    meter, offset = request.param
    folder = tmp_path_factory.mktemp("grid")
    on, off = folder / "on.mid", folder / "off.mid"
    on.write_bytes(midi_file(song(), 0, meter))
    off.write_bytes(midi_file(song(), offset, meter))
    return offset, read_midi(on), read_midi(off), on, off


def test_the_song_off_its_grid_reads_as_the_same_song_on_it(pair):
    offset, (on, _), (off, report), _, _ = pair
    tok = Tokenizer()
    on_view, off_view = on.token_view(), off.token_view()
    assert on_view.view_shift == 0 and off_view.view_shift == offset
    assert tok.encode(off_view) == tok.encode(on_view)
    assert [t.tick for t in off_view.tempos] == [0, TEMPO_CHANGE]  # the tempo change moves with the notes
    # the document keeps the file's ticks
    assert sorted(n.start for n in off.notes) == sorted(n.start - offset for n in song())
    assert [t.tick for t in off.tempos] == [0, TEMPO_CHANGE - offset]
    assert any(m.endswith(f"its notes {offset} ticks later to fall on the grid (the piece keeps its meter)")
               for m in report.messages)


def test_a_file_on_its_grid_is_read_as_it_was(pair):
    _, (on, report), _, _, _ = pair
    view = on.token_view()
    assert view.view_shift == 0
    assert [(n.start, n.duration, n.pitch) for n in view.notes] == [(n.start, n.duration, n.pitch) for n in on.notes]
    assert not any("ticks later" in m for m in report.messages)


def test_evaluation_reads_both_files_alike(pair, tiny_checkpoint):
    _, _, _, on_path, off_path = pair
    on = evaluate_files(tiny_checkpoint, [str(on_path)], device="cpu", memory=0)
    off = evaluate_files(tiny_checkpoint, [str(off_path)], device="cpu", memory=0)
    assert off["bits_per_note"] == on["bits_per_note"]


def test_a_continuation_lands_on_the_files_own_grid(pair, gen):
    """The same seed continues both files with the same tokens: the notes for the file off its grid are
    those for the file on it, `offset` ticks earlier, after the prompt, and the prompt stays as it is."""
    offset, (on, _), (off, _), _, _ = pair
    request = FIRST + 6 * BAR + TICKS_PER_BEAT  # a beat into bar 7: the continuation opens on bar 8
    on_stream = gen.stream(on, at_tick=request, bars=2, sampling=SamplingConfig(seed=5))
    off_stream = gen.stream(off, at_tick=request - offset, bars=2, sampling=SamplingConfig(seed=5))
    assert on_stream.window.ids == off_stream.window.ids
    assert on_stream.start_tick == FIRST + 7 * BAR
    assert (off_stream.start_tick, off_stream.end_tick) == (on_stream.start_tick - offset, on_stream.end_tick - offset)
    on_notes = [item.note for item in on_stream]
    off_notes = [item.note for item in off_stream]
    assert on_notes and [(n.start - offset, n.duration, n.pitch) for n in on_notes] == \
        [(n.start, n.duration, n.pitch) for n in off_notes]
    assert all(off_stream.start_tick <= n.start < off_stream.end_tick for n in off_notes)
    assert all((n.start + offset) % STEP_TICKS == 0 for n in off_notes)  # the file's own grid
    piece = off_stream.score(off_notes)
    kept = sorted((n.start, n.pitch) for n in off.notes if n.start < request - offset)
    assert sorted((n.start, n.pitch) for n in piece.notes if n.start < off_stream.start_tick) == kept


def test_an_infill_writes_its_notes_inside_the_bar_of_the_document(pair, gen):
    """Bar 6 of the song, regenerated in both files with the same seed (one note locked): the file off its
    grid gets the same notes `offset` ticks earlier, inside that bar of its document, and nothing outside
    the bar changes."""
    offset, (on, _), (off, _), _, _ = pair
    lines = token_bar_lines(on.token_view(), gen.tokenizer, until=on.end_tick)
    bar = lines.index(FIRST + 5 * BAR)
    start, end = lines[bar], lines[bar + 1]
    locked = next(n for n in on.notes if n.start == start + 2 * SIXTEENTH)
    locked_off = next(n for n in off.notes if n.start == locked.start - offset and n.pitch == locked.pitch)
    on_stream = infill(gen, on, start, end, sampling=SamplingConfig(seed=3), locked=[locked])
    off_stream = infill(gen, off, start - offset, end - offset, sampling=SamplingConfig(seed=3), locked=[locked_off])
    assert on_stream.prompt == off_stream.prompt
    assert (off_stream.start_tick, off_stream.end_tick) == (start - offset, end - offset)
    assert off_stream.bar_numbers == on_stream.bar_numbers
    on_notes = [item.note for item in on_stream]
    off_notes = [item.note for item in off_stream]
    assert off_notes and [(n.start - offset, n.duration, n.pitch) for n in on_notes] == \
        [(n.start, n.duration, n.pitch) for n in off_notes]
    assert all(start - offset <= n.start and n.end <= end - offset for n in off_notes)
    assert all((n.start + offset) % STEP_TICKS == 0 for n in off_notes)
    assert not off_stream.replaces(locked_off)
    assert off_stream.replaces(next(n for n in off.notes if n.start == start - offset))
    piece = off_stream.score(off_notes)
    outside = sorted((n.start, n.pitch) for n in off.notes if not start - offset <= n.start < end - offset)
    assert sorted((n.start, n.pitch) for n in piece.notes if not start - offset <= n.start < end - offset) == outside
    assert (locked_off.start, locked_off.pitch) in {(n.start, n.pitch) for n in piece.notes}


def test_rwkv_music_tokens_says_how_far_the_view_moves_the_notes(pair, capsys):
    offset, _, _, on_path, off_path = pair
    shown = {}
    for name, path in (("on", on_path), ("off", off_path)):
        assert cli_main(["tokens", str(path), "--json"]) == 0
        shown[name] = json.loads(capsys.readouterr().out)
    assert (shown["on"]["view_shift"], shown["off"]["view_shift"]) == (0, offset)
    assert shown["on"]["tokens"] == shown["off"]["tokens"]

"""Sampled onsets keep to the piece's grid (core.idiom.onset_grid, applied by the sampling grammar): the
places within the beat that the prompt's own onsets take, read bar by bar; a free performance, or too
little of a piece, sets no grid; reading a user's file is never limited. Checked on the grammar and on
what the bundled model writes after real POP909 songs."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from core import idiom
from core.generate import Generator, SamplingConfig
from core.midi import read_midi
from core.paths import base_model
from core.score import TICKS_PER_BEAT, Note
from core.tokenizer import Tokenizer
from core.tokenizer.vocabulary import GRID, STEP_TICKS

POP = Path(__file__).parent / "data" / "pop909"
SIXTEENTH = TICKS_PER_BEAT // 4


def places(ticks, bar_starts):
    """Each onset's place within the beat, counted from its bar's start."""
    out = set()
    for t in ticks:
        bar = max(b for b in bar_starts if b <= t)
        out.add((t - bar) % TICKS_PER_BEAT // STEP_TICKS)
    return out


def test_the_grid_is_the_places_the_prompts_onsets_take():
    bars = [i * 4 * TICKS_PER_BEAT for i in range(9)]
    straight = [Note(i * SIXTEENTH, 100, 60) for i in range(64)]
    assert idiom.onset_grid(straight, bars, 16 * TICKS_PER_BEAT) == {0, 6, 12, 18}
    late = [Note(n.start + STEP_TICKS, 100, 60) for n in straight]  # every onset one step late
    assert idiom.onset_grid(late, bars, 16 * TICKS_PER_BEAT + STEP_TICKS) == {1, 7, 13, 19}
    triplets = [Note(i * TICKS_PER_BEAT // 3, 100, 60) for i in range(48)]
    assert idiom.onset_grid(triplets, bars, 16 * TICKS_PER_BEAT) == {0, 8, 16}
    stray = straight + [Note(5 * TICKS_PER_BEAT + STEP_TICKS, 100, 64)]  # one onset off it: left out
    assert idiom.onset_grid(stray, bars, 16 * TICKS_PER_BEAT) == {0, 6, 12, 18}
    # after the range too (regenerated bars), and only the CONTEXT_BEATS around it
    far = [Note(-100 * TICKS_PER_BEAT + i * STEP_TICKS, 100, 60) for i in range(200)]
    assert idiom.onset_grid(far + straight, bars, 8 * TICKS_PER_BEAT, 12 * TICKS_PER_BEAT) == {0, 6, 12, 18}


def test_the_grid_is_read_from_each_bars_own_start():
    """In 5/8 a bar is 2.5 quarter notes: the second bar's triplets sit on other places of the absolute
    quarter-note grid, but on the same places of their bar, as the grammar counts them."""
    bar = 5 * TICKS_PER_BEAT // 2
    bars = [i * bar for i in range(12)]
    notes = [Note(b + i * TICKS_PER_BEAT // 3, 100, 60) for b in bars[:10] for i in range(7)]
    assert idiom.onset_grid(notes, bars, bars[10]) == {0, 8, 16}


def test_no_grid_for_a_free_performance_or_a_few_notes():
    bars = [i * 4 * TICKS_PER_BEAT for i in range(9)]
    rng = random.Random(0)
    free = [Note(rng.randrange(16 * TICKS_PER_BEAT), 100, 60) for _ in range(80)]
    assert idiom.onset_grid(free, bars, 16 * TICKS_PER_BEAT) is None
    few = [Note(i * TICKS_PER_BEAT, 100, 60) for i in range(idiom.GRID_MIN_ONSETS - 1)]
    assert idiom.onset_grid(few, bars, 16 * TICKS_PER_BEAT) is None


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def test_sampled_onsets_snap_to_the_grid_and_reading_never_does(tok):
    head = [tok.token_id(n) for n in ("BOS", "Tempo_100", "Bar", "TimeSig_4/4", "Pos_6", "Program_0", "Vel_20",
                                      "Pitch_60", "Dur_6")]
    g = tok.grammar(head, playable=True)
    before = g.allowed().copy()
    g.limit_grid({0, 6, 12, 18})
    assert (g.allowed() == before).all()  # nothing is masked: an onset moves, its probability stays an onset's
    snap = {s: tok.value(g.snapped(tok.pos_id(s))) for s in (7, 11, 13, 15, 18, 23)}
    assert snap == {7: 12, 11: 12, 13: 12, 15: 12, 18: 18, 23: 24}  # the nearest, the earlier of two
    assert g.snapped(tok.token_id("Bar")) == tok.token_id("Bar")
    for name in ("Pos_84", "Pitch_62", "Dur_6"):  # from the bar's second last place on the grid,
        g.advance(tok.token_id(name))
    mask = g.allowed()  # only steps within half a beat of its last one: later ones are the next bar's
    assert [s for s in range(96) if mask[tok.pos_id(s)]] == list(range(85, 96))
    assert g.snapped(tok.pos_id(95)) == tok.pos_id(90)
    for name in ("Pos_90", "Pitch_64", "Dur_6"):
        g.advance(tok.token_id(name))
    mask = g.allowed()
    assert not any(mask[tok.pos_id(s)] for s in range(91, 96)) and mask[tok.bar_id]
    late = tok.grammar(head[:4], playable=True)
    late.limit_grid({2, 8, 14, 20})
    assert late.snapped(tok.pos_id(0)) == tok.pos_id(2)
    late.limit_grid(None)
    assert late.snapped(tok.pos_id(0)) == tok.pos_id(0)
    reading = tok.grammar(head)  # a user's file is read as it is
    reading.limit_grid({0, 6, 12, 18})
    assert reading.snapped(tok.pos_id(7)) == tok.pos_id(7)


@pytest.fixture(scope="module")
def bundled():
    return Generator.load(str(base_model()))


def first_bars(song: str, bars: int = 16):
    score, _ = read_midi(POP / f"{song}.mid")
    return score.slice(0, score.bar_starts()[bars])


@pytest.mark.parametrize("song", ["001", "002", "003"])
def test_the_bundled_models_continuation_keeps_the_songs_grid(bundled, song):
    prompt = first_bars(song)
    stream = bundled.stream(prompt, bars=4, variations=3, sampling=SamplingConfig(seed=5))
    assert stream.grid is not None and stream.grid < set(range(GRID))
    notes = [item.note for item in stream]
    assert notes
    view = stream.view  # the model's grid: places are read where the model wrote the notes
    view_ticks = [view.note_from_document(n).start for n in notes]
    assert places(view_ticks, view.bar_starts(max(view_ticks))) <= stream.grid
    free = bundled.stream(prompt, bars=4, variations=3, sampling=SamplingConfig(seed=5, grid=False))
    assert free.grid is None


def test_a_loosely_played_song_sets_no_grid(bundled):
    """POP909 097's first 16 bars: a fifth of its onsets lie on places it takes once or twice."""
    assert bundled.stream(first_bars("097"), bars=4).grid is None


def test_regenerated_bars_keep_the_grid_around_them(bundled):
    from core.infill import InfillStream
    score, _ = read_midi(POP / "001.mid")
    bars = score.bar_starts()
    stream = InfillStream(bundled, score, bars[8], bars[10], variations=2, sampling=SamplingConfig(seed=2))
    notes = [item.note for item in stream]
    assert notes
    view = stream.view
    grid = idiom.onset_grid(stream.kept, stream.lines, stream.chunks[0].start, stream.chunks[0].end)
    assert grid is not None
    view_ticks = [view.note_from_document(n).start for n in notes]
    assert places(view_ticks, stream.lines) <= grid



def test_the_command_line_keeps_to_the_grid_unless_told_otherwise(tmp_path):
    from core import cli
    from core.cli_commands import _sampling
    prompt = tmp_path / "prompt.mid"
    from core.midi import write_midi
    write_midi(first_bars("001"), prompt)
    args = cli.build_parser().parse_args(["generate", "--prompt", str(prompt), "-o", "x.mid"])
    assert _sampling(args).grid
    args = cli.build_parser().parse_args(["generate", "--prompt", str(prompt), "-o", "x.mid", "--free-rhythm"])
    assert not _sampling(args).grid
    out = tmp_path / "out.mid"
    assert cli.main(["generate", "--prompt", str(prompt), "--bars", "2", "--seed", "1", "-o", str(out)]) == 0
    written, _ = read_midi(out)
    view = written.token_view()
    start = view.bar_starts()[16]
    grid = idiom.onset_grid(view.notes, view.bar_starts(start), start)
    new = [n.start for n in view.notes if n.start >= start]
    assert grid and new and places(new, view.bar_starts(max(new))) <= grid

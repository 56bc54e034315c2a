"""The infill layout is written once (core.infill_layout): the example training cuts for a gap (core.training.data)
and the prompt the app gives the model for the same gap (core.infill) are the same token sequence, up to
where the middle's own tokens start: every gap of a piece, with the context cut to fit a budget too."""
from __future__ import annotations

import pytest

from core.training import data
from core.infill import AFTER_BARS, add_part, infill, token_bar_lines
from core.infill_layout import middle_start
from core.score import TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature

BARS = 10
BAR_3_4, BAR_2_4 = 3 * TICKS_PER_BEAT, 2 * TICKS_PER_BEAT
MELODY, BASS = (0, False), (33, False)
HEADER_KINDS = ("tempo", "bar", "timesig")


def make_piece(flat: bool) -> Score:
    """6 bars of 3/4, then 4 of 2/4; 100 BPM, 90 from beat 2 of bar 4; a melody of eighths over a bass note
    per bar. `flat`: one velocity throughout (the Flat flag is part of the layout)."""
    notes, tick = [], 0
    for bar in range(BARS):
        length = BAR_3_4 if bar < 6 else BAR_2_4
        notes += [Note(tick + i * 240, 240, 60 + (bar * 3 + i * 5) % 12, 80 if flat else 90 - 7 * i)
                  for i in range(length // 240)]
        notes.append(Note(tick, length, 36 + bar % 5, 80 if flat else 70, program=BASS[0]))
        tick += length
    return Score(notes, [TempoChange(0, 100), TempoChange(3 * BAR_3_4 + TICKS_PER_BEAT, 90)],
                 [TimeSignature(0, 3, 4), TimeSignature(6 * BAR_3_4, 2, 4)])


@pytest.fixture(scope="module", params=[False, True], ids=["dynamics", "flat"])
def piece(request):
    return make_piece(request.param)


def assert_prompt_is_the_example_up_to_its_middle(tok, prompt: list[int], example: list[int]) -> None:
    """The prompt is the example up to the end of the middle's first header (Fill Tempo Bar TimeSig): what
    follows in the example, the model writes."""
    start = middle_start(tok, example)
    assert prompt == example[:len(prompt)]
    assert len(prompt) > start and all(tok.kind(t) in HEADER_KINDS for t in prompt[start:])
    assert tok.kind(example[len(prompt)]) not in HEADER_KINDS  # the whole header is in the prompt


def bar_gaps():
    """(first bar, bars) of every gap whose bars after it the app reads whole (it reads AFTER_BARS at most)."""
    return [(a, k) for a in range(BARS) for k in range(1, BARS - a + 1) if BARS - (a + k) <= AFTER_BARS]


def test_every_bar_gap_is_prompted_as_training_lays_it_out(gen, piece):
    tok = gen.tokenizer
    ids = tok.encode(piece)
    lines = token_bar_lines(piece, tok, bars=BARS)
    for a, k in bar_gaps():
        example = data.bar_gap_tokens(ids, tok, a, k, budget=10 ** 6)
        assert example[middle_start(tok, example) - 1] == tok.fill_id and example[-1] == tok.eos_id
        assert tok.gap_id(k) in example
        stream = infill(gen, piece, lines[a], lines[a + k])
        assert len(stream.chunks) == 1
        assert_prompt_is_the_example_up_to_its_middle(tok, stream.prompt, example)


def test_a_context_cut_to_a_budget_leaves_out_the_same_bars(gen, piece):
    """Training's budget holds the whole example, the app's the context before Fill: given the same room for
    the context, both leave out the same bars (the furthest from the gap first)."""
    tok = gen.tokenizer
    ids = tok.encode(piece)
    lines = token_bar_lines(piece, tok, bars=BARS)
    whole = len(ids)
    cut = 0
    for a, k in bar_gaps():
        middle = data.bar_gap_tokens(ids, tok, a, k, budget=10 ** 6)
        middle = middle[middle_start(tok, middle) - 1:]  # Fill ... EOS
        for budget in range(len(middle) + 8, whole + len(middle), 23):
            example = data.bar_gap_tokens(ids, tok, a, k, budget)
            if example is None:
                continue
            cut += len(example) < whole + len(middle)
            prompt = infill(gen, piece, lines[a], lines[a + k], context_tokens=budget - len(middle)).prompt
            assert_prompt_is_the_example_up_to_its_middle(tok, prompt, example)
    assert cut > 100  # most budgets cut the context


@pytest.mark.parametrize("part", [MELODY, BASS])
def test_every_part_span_is_prompted_as_training_lays_it_out(gen, piece, part):
    tok = gen.tokenizer
    ids = tok.encode(piece)
    lines = token_bar_lines(piece, tok, bars=BARS)
    for first in range(BARS):
        for n in range(1, BARS - first + 1):
            example = data.part_span_tokens(ids, tok, first, n, lambda instruments: part, budget=10 ** 6)
            assert example[middle_start(tok, example) - 3:middle_start(tok, example)] == [
                tok.part_id, tok.instrument_id(*part), tok.fill_id]
            stream = add_part(gen, piece, part, lines[first], lines[first + n])
            assert len(stream.chunks) == 1
            assert_prompt_is_the_example_up_to_its_middle(tok, stream.prompt, example)

"""Continuation with a small real RWKV-7 (random init): determinism, variations, grammar, length, tempo,
meter, instruments, windows, styles, and the stream agreeing with the final scores."""
from __future__ import annotations

import pytest
import torch

from core.generate import Generator, SamplingConfig, parse_instruments, sample_tokens
from core.network.checkpoint import save_state_file
from core.score import TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature
from tests.notes import note_key

BAR_3_4 = 3 * TICKS_PER_BEAT


@pytest.fixture(scope="module")
def prompt():
    """Four bars of 3/4 at 100 BPM: piano melody and a bass line."""
    notes = [Note(i * 240, 240, 60 + (i * 5) % 12, 90) for i in range(24)]
    notes += [Note(i * BAR_3_4, BAR_3_4, 36 + i, 70, program=33) for i in range(4)]
    return Score(notes, [TempoChange(0, 100)], [TimeSignature(0, 3, 4)])


@pytest.fixture(scope="module")
def two_bars(gen, prompt):
    """One run, three variations of two bars, reused by several tests (the model is slow-ish to sample).
    The bare network (memory 0): the prompt repeats every 12 notes, so the piece memory would all but
    dictate the continuation of a random network (tests/test_memory.py covers the memory)."""
    stream = gen.stream(prompt, bars=2, variations=3, sampling=SamplingConfig(seed=7, memory=0))
    streamed = [[] for _ in range(3)]
    for item in stream:
        streamed[item.variation].append(item.note)
    return stream, streamed


def test_continuation_starts_on_the_bar_line_after_the_prompt(two_bars, prompt):
    stream, streamed = two_bars
    assert prompt.end_tick == 4 * BAR_3_4
    assert stream.start_tick == 4 * BAR_3_4 and stream.end_tick == 6 * BAR_3_4
    for notes in streamed:
        assert notes, "every variation plays something"
        assert all(stream.start_tick <= n.start and n.end <= stream.end_tick for n in notes)
        assert [n.start for n in notes] == sorted(n.start for n in notes)  # streamed in time order


def test_every_variation_decodes_and_has_exactly_n_bars(two_bars, gen):
    stream, streamed = two_bars
    tok = gen.tokenizer
    for v, notes in enumerate(streamed):
        ids = stream.window.ids + stream.tokens[v] + [tok.eos_id]
        score, stats = tok.decode(ids)
        assert stats.invalid == 0 and stats.incomplete == 0 and stats.finished
        assert stream.reasons[v] == "bars"  # stopped by the length, not by EOS or the token budget
        assert stream.tokens[v].count(tok.bar_id) == 1  # the first bar was opened by the prompt: 2 bars
        decoded = [n for n in score.notes if n.start >= stream.start_tick - stream.window.start_tick]
        assert len(decoded) == len(notes)
        result = stream.score(notes)
        first, last = result.bar_at(stream.start_tick), result.bar_at(result.end_tick - 1)
        assert last - first + 1 <= 2 and result.bar_starts(stream.end_tick)[-1] == stream.end_tick


def test_tempo_meter_and_instruments_of_the_prompt_are_kept(two_bars, gen, prompt):
    stream, streamed = two_bars
    for v, notes in enumerate(streamed):
        kinds = {gen.tokenizer.kind(t) for t in stream.tokens[v]}
        assert not kinds & {"tempo", "timesig", "eos"}
        result = stream.score(notes)
        assert [(t.tick, t.bpm) for t in result.tempos] == [(0, 100)]
        assert [(t.numerator, t.denominator) for t in result.time_signatures] == [(3, 4)]
        assert {n.instrument for n in notes} <= {(0, False), (33, False)}


def test_variations_differ(two_bars):
    _, streamed = two_bars
    keys = [tuple((n.start, n.pitch, n.duration) for n in notes) for notes in streamed]
    assert len(set(keys)) == 3


def test_same_seed_same_notes_and_stream_equals_generate(gen, prompt, two_bars):
    _, streamed = two_bars
    scores = gen.generate(prompt, bars=2, variations=3, sampling=SamplingConfig(seed=7, memory=0))
    for notes, score in zip(streamed, scores):
        continuation = [n for n in score.notes if n.start >= 4 * BAR_3_4]
        # the same notes; one re-struck while it sounds in its track ends there (a file holds it in one track)
        got, want = (sorted((k[:1] + k[2:], k[1]) for k in map(note_key, ns)) for ns in (continuation, notes))
        assert [k for k, _ in got] == [k for k, _ in want]
        assert all(g <= w for (_, g), (_, w) in zip(got, want))
        assert [n.start for n in score.notes if n.start < 4 * BAR_3_4] == [n.start for n in prompt.notes]
    other = gen.generate(prompt, bars=1, sampling=SamplingConfig(seed=8))[0]
    assert [n.pitch for n in other.notes[len(prompt.notes):]] != \
           [n.pitch for n in scores[0].notes[len(prompt.notes):]][:len(other.notes) - len(prompt.notes)]


def test_instrument_restriction_is_obeyed(gen, prompt):
    stream = gen.stream(prompt, bars=1, variations=2, sampling=SamplingConfig(seed=3),
                        instruments=[(0, True), (40, False)])
    notes = [item.note for item in stream]
    assert notes and {n.instrument for n in notes} <= {(0, True), (40, False)}


def test_continue_from_the_middle_starts_on_the_next_bar_line(gen, prompt):
    at = BAR_3_4 + 200  # inside bar 2
    stream = gen.stream(prompt, beats=2, at_tick=at, sampling=SamplingConfig(seed=5))
    notes = [item.note for item in stream]
    assert stream.start_tick == 2 * BAR_3_4
    assert stream.end_tick == 2 * BAR_3_4 + 2 * TICKS_PER_BEAT
    assert all(stream.start_tick <= n.start < stream.end_tick and n.end <= stream.end_tick for n in notes)
    result = stream.score(notes)
    assert all(n.start < at or n.start >= stream.start_tick for n in result.notes)  # prompt cut at `at`


def test_long_prompt_keeps_the_last_ctx_tokens_from_a_bar_with_header(tiny_checkpoint, prompt):
    long = Score([Note(i * 120, 120, 50 + (i * 7) % 30, 80) for i in range(400)], [TempoChange(0, 100)],
                 [TimeSignature(0, 3, 4)])
    small = Generator.load(tiny_checkpoint, ctx=96)
    window = small.window(long)
    tok = small.tokenizer
    assert len(window.ids) <= 96 - 96 // 4
    head = [t for t in window.ids[:5] if tok.kind(t) != "flat"][:4]  # one velocity throughout: Flat after BOS
    assert [tok.kind(t) for t in head] == ["bos", "tempo", "bar", "timesig"]
    assert tok.value(head[1]) == 100 and tok.value(head[3]) == (3, 4)
    assert window.start_tick % BAR_3_4 == 0 and window.start_tick > 0
    stream = small.stream(long, beats=1, sampling=SamplingConfig(seed=1))
    notes = [item.note for item in stream]
    assert stream.start_tick == window.continuation_tick
    assert all(stream.start_tick <= n.start < stream.start_tick + TICKS_PER_BEAT for n in notes)


def test_style_file_provides_the_initial_state(tiny_checkpoint, gen, prompt, tmp_path):
    cfg = gen.model.config
    torch.manual_seed(0)
    style = torch.randn(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size)
    path = tmp_path / "style.pth"
    save_state_file(str(path), style, gen.model)
    styled = Generator.load(tiny_checkpoint, str(path))
    assert torch.equal(styled.style.state, style) and styled.style.parts == ("state",)
    window = gen.window(prompt)
    plain_logits, _ = gen._prefill(window.ids)
    styled_logits, _ = styled._prefill(window.ids)
    assert not torch.allclose(plain_logits, styled_logits)
    expected, _ = gen.model.prefill(torch.tensor([window.ids]), gen.model.init_state(1, wkv=style))
    assert torch.allclose(styled_logits, expected)


def test_empty_prompt_starts_at_zero(gen):
    stream = gen.stream(Score(), bars=1, sampling=SamplingConfig(seed=2))
    notes = [item.note for item in stream]
    assert stream.start_tick == 0 and stream.end_tick == 4 * TICKS_PER_BEAT
    assert all(0 <= n.start < 4 * TICKS_PER_BEAT for n in notes)


def test_sampling_only_picks_allowed_tokens():
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50)
    allowed = torch.zeros(4, 50, dtype=torch.bool)
    allowed[:, 10:13] = True
    for cfg in (SamplingConfig(), SamplingConfig(temperature=2.0, top_p=1.0), SamplingConfig(top_k=2)):
        for _ in range(20):
            assert all(10 <= t < 13 for t in sample_tokens(logits, allowed, cfg, rng).tolist())
    greedy = sample_tokens(logits, allowed, SamplingConfig(temperature=0), rng)
    assert torch.equal(greedy, logits[:, 10:13].argmax(-1) + 10)
    assert torch.equal(sample_tokens(logits, allowed, SamplingConfig(top_k=1), rng), greedy)


def test_parse_instruments():
    assert parse_instruments(["drums", "33", "Violin", "acoustic grand"]) == [(0, True), (33, False), (40, False),
                                                                             (0, False)]
    with pytest.raises(ValueError):
        parse_instruments(["bass"])  # ambiguous
    with pytest.raises(ValueError):
        parse_instruments(["200"])


def test_cli_generate_writes_one_file_per_variation(tiny_checkpoint, prompt, tmp_path, capsys):
    from core.cli import main
    from core.midi import read_midi, write_midi

    src = tmp_path / "prompt.mid"
    write_midi(prompt, src)
    out = tmp_path / "out.mid"
    rc = main(["generate", "--model", tiny_checkpoint, "--prompt", str(src), "--bars", "1", "--variations", "2",
               "--seed", "3", "--instruments", "drums", "Violin", "-o", str(out)])
    assert rc == 0
    for v in (1, 2):
        score, _ = read_midi(tmp_path / f"out-{v}.mid")
        new = [n for n in score.notes if n.start >= 4 * BAR_3_4]
        assert new and all(n.start < 5 * BAR_3_4 for n in new)
        assert {n.instrument for n in new} <= {(0, True), (40, False)}
        assert [(t.numerator, t.denominator) for t in score.time_signatures] == [(3, 4)]
        assert round(score.tempos[0].bpm) == 100
    assert "out-2.mid" in capsys.readouterr().out
    assert main(["generate", "--model", str(tmp_path / "missing.pth"), "--prompt", str(src), "-o", str(out)]) == 2


def test_prefill_reuses_a_cached_prefix(tiny_checkpoint, prompt):
    cold = Generator.load(tiny_checkpoint)
    warm = Generator.load(tiny_checkpoint)
    shorter = Score([n for n in prompt.notes if n.start < 3 * BAR_3_4], list(prompt.tempos),
                    list(prompt.time_signatures))
    warm.warm(shorter)
    full_ids = warm.window(prompt).ids
    assert full_ids[:len(warm.window(shorter).ids)] == warm.window(shorter).ids  # a prefix: only a bar is new
    warm_logits, warm_state = warm._prefill(full_ids)
    cold_logits, cold_state = cold._prefill(full_ids)
    assert torch.allclose(warm_logits, cold_logits, atol=1e-4)
    assert torch.allclose(warm_state.wkv[-1], cold_state.wkv[-1], atol=1e-4)


def long_score(bars: int) -> Score:
    return Score([Note(i * 120, 120, 50 + (i * 7) % 30, 80) for i in range(bars * 12)], [TempoChange(0, 100)],
                 [TimeSignature(0, 3, 4)])


def test_tail_encoding_gives_the_same_window_as_cutting_the_full_encoding(tiny_checkpoint):
    long = long_score(40)
    small = Generator.load(tiny_checkpoint, ctx=200)
    tok = small.tokenizer
    full = tok.encode(long, eos=False, end_tick=long.end_tick) + [tok.bar_id]
    index, header = next((i, h) for i, h in tok.bar_headers(full) if len(h) + len(full) - i - 1 <= 150)
    window = small.window(long)
    assert window.ids == header + full[index + 1:]
    assert window.start_tick == (tok.bar_indices(full).index(index)) * BAR_3_4


def test_a_long_prompt_keeps_its_cut_when_that_reuses_a_prefilled_window(tiny_checkpoint):
    long = long_score(40)
    small = Generator.load(tiny_checkpoint, ctx=200)
    small.warm(long, at_tick=39 * BAR_3_4)  # prefilled while the last bar was being written
    warmed = small._prefill_cache[0][0]
    window = small.window(long)
    assert tuple(window.ids[:len(warmed)]) == warmed
    fresh = Generator.load(tiny_checkpoint, ctx=200).window(long)
    assert fresh.start_tick > window.start_tick  # without the cache the cut moves forward
    assert len(window.ids) <= 200

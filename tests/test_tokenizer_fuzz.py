"""Fuzzing the tokenizer: arbitrary ids always decode; grammar-masked random sampling always decodes, without a
single skipped id, to a Score that core.midi writes as a valid MIDI file and reads back unchanged."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from core.midi import read_midi, write_midi
from core.score import Note, Score
from core.tokenizer import GrammarState, Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def sample_masked(tok: Tokenizer, rng: np.random.Generator, n_tokens: int, grammar: GrammarState | None = None,
                  kind_bias: bool = True, infill: bool = False) -> tuple[list[int], GrammarState]:
    """Uniform over the allowed tokens; with kind_bias, first a uniform choice among the allowed kinds (so
    bars, meters, tempi and notes are all reached often, not drowned by the hundreds of Pos and Tempo ids),
    where EOS is mostly left out so that pieces grow long. Without `infill`, a plain piece (no Gap or Part)."""
    g = grammar or tok.grammar()
    kinds = tok.kind_ids
    eos_kind = kinds[tok.eos_id]
    plain = np.ones(tok.vocab_size, dtype=bool)
    if not infill:
        plain[list(tok.ids_of_kind("gap")) + list(tok.ids_of_kind("part"))] = False
    ids = []
    for _ in range(n_tokens):
        if g.finished:
            break
        allowed = np.flatnonzero(g.allowed() & plain)
        assert allowed.size, "the grammar reached a dead end"
        if kind_bias:
            choices = np.unique(kinds[allowed])
            if len(choices) > 1 and rng.random() > 0.02:
                choices = choices[choices != eos_kind]
            allowed = allowed[kinds[allowed] == rng.choice(choices)]
        t = int(rng.choice(allowed))
        g.advance(t)
        ids.append(t)
    return ids, g


def test_random_ids_decode_without_error(tok):
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(0, 400))
        ids = rng.integers(-5, tok.vocab_size + 5, size=n).tolist()
        if trial % 2:  # start like a real sequence so that more of it is taken
            ids = [tok.bos_id, tok.tempo_id(100), tok.bar_id, tok.timesig_id(4, 4)] + ids
        score, stats = tok.decode(ids)
        assert stats.invalid + stats.notes <= len(ids)
        assert all(0 <= n.pitch <= 127 and n.duration >= 1 and n.start >= 0 for n in score.notes)
    # other junk: numpy ids, floats, None, a torch-like 0-d array, an empty sequence
    score, stats = tok.decode([np.int64(tok.bos_id), 1.5, None, "x", np.array(3), tok.pad_id])
    assert stats.invalid == 3 and stats.bars == 1 and score.notes == []  # 0-d array 3 is a Bar; PAD is silent
    assert tok.decode([])[0].notes == []


def test_masked_sampling_always_gives_a_valid_midi_file(tok, tmp_path):
    rng = np.random.default_rng(2)
    for trial in range(25):
        ids, g = sample_masked(tok, rng, int(rng.integers(20, 600)), kind_bias=trial % 5 != 0)
        score, stats = tok.decode(ids)
        assert stats.invalid == 0 and stats.bars == g.bars
        path = tmp_path / f"sample{trial}.mid"
        write_midi(score, path)
        mido.MidiFile(path)  # a standard file that mido itself parses
        back, _ = read_midi(path)
        # every note comes back (MIDI itself cannot tell apart two equal notes struck together on one channel)
        assert {(n.start, n.pitch, n.drum) for n in back.notes} == {(n.start, n.pitch, n.drum) for n in score.notes}
        # MIDI stores microseconds per beat: whole BPMs come back within a thousandth
        assert [(t.tick, round(t.bpm)) for t in back.tempos] == [(t.tick, t.bpm) for t in score.tempos]
        assert back.time_signatures == score.time_signatures
        # a decoded Score is already quantised: it encodes and decodes to itself
        again, _ = tok.decode(tok.encode(score))
        assert sorted(map(_key, again.notes)) == sorted(map(_key, score.notes))
        assert again.tempos == score.tempos and again.time_signatures == score.time_signatures


def _key(n: Note):
    return (n.start, n.duration, n.pitch, n.velocity, n.program, n.drum)


def test_masked_sampling_after_a_prompt_respects_the_instruments(tok):
    rng = np.random.default_rng(3)
    prompt = tok.encode(Score([Note(i * 240, 240, 60 + i % 12, 90, program=0) for i in range(32)]), eos=False)
    wanted = {(33, False), (0, True)}
    for _ in range(5):
        g = tok.grammar(prompt, instruments=wanted)
        bars_before = g.bars
        assert bars_before == tok.decode(prompt)[1].bars  # the grammar counted the prompt's bars
        ids, g = sample_masked(tok, rng, 300, grammar=g)
        score, stats = tok.decode(prompt + ids)
        assert stats.invalid == 0
        outside = [n for n in score.notes if n.instrument not in wanted]
        assert len(outside) == 32  # exactly the prompt's piano notes
        # the grammar's bar count goes on from the prompt's, one per Bar sampled, as the decoder counts
        new_bars = ids.count(tok.bar_id)
        assert new_bars > 0 and g.bars == bars_before + new_bars == stats.bars


def test_masks_agree_with_accepts_on_random_walks(tok):
    rng = np.random.default_rng(4)
    for _ in range(6):
        g = tok.grammar()
        for _ in range(150):
            if g.finished:
                break
            mask = g.allowed()
            probe = rng.integers(0, tok.vocab_size, size=64)
            assert all(bool(mask[t]) == g.accepts(int(t)) for t in probe)
            refused = np.flatnonzero(~mask)
            if refused.size:
                with pytest.raises(ValueError):
                    g.copy().advance(int(rng.choice(refused)))
            allowed = np.flatnonzero(mask)
            g.advance(int(rng.choice(allowed)))


def test_version_mismatch_raises(tok):
    d = tok.to_dict()
    for bad in ({**d, "version": "rwkvmusic-tok-99"}, {"vocab_size": d["vocab_size"]}, {}):
        with pytest.raises(ValueError):
            Tokenizer.from_dict(bad)

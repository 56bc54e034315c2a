"""What generated music may never do, whatever the model: sound the same pitch twice at one onset on one
instrument, stack more notes at an onset than real music does, or leave the instrument's playable range.
The grammar forbids it (so every sampler obeys); the bundled model is checked on a real pop song at a high
temperature, where a model left alone stacks notes."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from core.generate import Generator, SamplingConfig
from core.midi import read_midi
from core.paths import base_model
from core.tokenizer import MAX_ONSET_NOTES, Tokenizer, playable_range

POP = Path(__file__).parent / "data" / "pop909" / "001.mid"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def at_onset(tok: Tokenizer, *extra: str):
    names = ["BOS", "Tempo_100", "Bar", "TimeSig_4/4", "Pos_0", "Program_0", "Vel_20", *extra]
    return tok.grammar([tok.token_id(n) for n in names])


def test_one_instrument_never_sounds_a_pitch_twice_at_one_onset(tok):
    g = at_onset(tok, "Pitch_60", "Dur_24")
    assert not g.accepts(tok.token_id("Pitch_60")) and not g.accepts(tok.token_id("Pitch_55"))
    assert g.accepts(tok.token_id("Pitch_61"))
    assert not g.allowed()[tok.token_id("Pitch_60")] and g.allowed()[tok.token_id("Pitch_64")]
    other = g.copy()
    other.advance(tok.token_id("Program_40"))  # another instrument may double it
    assert other.accepts(tok.token_id("Pitch_60"))
    later = g.copy()
    later.advance(tok.token_id("Pos_12"))  # and the same one at the next onset
    assert later.accepts(tok.token_id("Pitch_60"))


def test_chords_are_bounded_and_a_full_instrument_cannot_be_chosen_again(tok):
    notes = []
    for p in range(40, 40 + MAX_ONSET_NOTES):
        notes += [f"Pitch_{p}", "Dur_24"]
    g = at_onset(tok, *notes)
    assert not any(g.accepts(t) for t in tok.ids_of_kind("pitch"))
    assert not g.accepts(tok.token_id("Program_0"))
    assert not g.accepts(tok.token_id("Vel_3"))  # a velocity would lead nowhere
    assert g.accepts(tok.token_id("Program_40")) and g.accepts(tok.token_id("Pos_1"))
    top = at_onset(tok, "Pitch_127", "Dur_24")  # nothing above the top pitch: the instrument is done here
    assert not top.allowed()[tok.token_id("Program_0")]


def test_playable_ranges_limit_sampling_not_reading(tok):
    prefix = [tok.token_id(n) for n in ["BOS", "Tempo_100", "Bar", "TimeSig_4/4", "Pos_0", "Program_33", "Vel_20"]]
    reading = tok.grammar(prefix)
    assert reading.accepts(tok.token_id("Pitch_100"))  # a file may hold anything
    sampling = tok.grammar(prefix, playable=True)
    lo, hi = playable_range(33)
    mask = sampling.allowed()
    assert [p for p in range(128) if mask[tok.pitch_id(p)]] == list(range(lo, hi + 1))
    assert not sampling.accepts(tok.pitch_id(hi + 1))


def test_the_bundled_model_on_a_pop_song_writes_no_stacked_or_unplayable_notes():
    gen = Generator.load(str(base_model()))
    prompt, _ = read_midi(POP)
    bar = prompt.bar_starts()[12]  # 12 bars of the song, its pickup included
    stream = gen.stream(prompt.slice(0, bar), bars=4, variations=3,
                        sampling=SamplingConfig(seed=3, temperature=1.6, top_p=1.0))
    notes = [[] for _ in range(3)]
    for item in stream:
        notes[item.variation].append(item.note)
    assert all(notes), "every variation plays"
    for v in notes:
        keys = Counter((n.start, n.pitch, n.instrument) for n in v)
        assert max(keys.values()) == 1, "a pitch sounded twice at one onset"
        chords = Counter((n.start, n.instrument) for n in v)
        assert max(chords.values()) <= MAX_ONSET_NOTES
        for n in v:
            lo, hi = playable_range(*n.instrument)
            assert lo <= n.pitch <= hi, n

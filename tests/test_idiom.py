"""A new part plays its instrument (core.idiom, applied by the sampling grammar): a bass line one note at a
time in the bass register, winds monophonic, drums a few kit sounds at once on channel 10; what a user's
file holds is never limited. Checked on the grammar and on what the bundled model writes into a real song."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import median

import pytest

from core import idiom
from core.generate import Generator, SamplingConfig
from core.infill import add_part
from core.midi import read_midi, score_to_bytes
from core.paths import base_model
from core.tokenizer import Tokenizer

POP = Path(__file__).parent / "data" / "pop909" / "001.mid"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def grammar(tok, names, playable=True):
    return tok.grammar([tok.token_id(n) for n in names], playable=playable)


def test_the_onset_cap_and_register_bind_sampling_and_never_reading(tok):
    head = ["BOS", "Tempo_100", "Bar", "TimeSig_4/4", "Pos_0", "Program_33", "Vel_20"]
    g = grammar(tok, head)
    g.limit_onsets(*idiom.part_limits((33, False)))
    mask = g.allowed()
    assert [p for p in range(128) if mask[tok.pitch_id(p)]] == list(range(28, 56))  # E1..G3
    g.advance(tok.token_id("Pitch_40"))
    g.advance(tok.token_id("Dur_24"))
    mask = g.allowed()
    assert not any(mask[tok.pitch_id(p)] for p in range(128))  # one note at this onset
    assert not mask[tok.token_id("Program_33")] and mask[tok.token_id("Pos_12")]
    reading = grammar(tok, head + ["Pitch_40", "Dur_24"], playable=False)
    reading.limit_onsets(*idiom.part_limits((33, False)))
    assert reading.accepts(tok.token_id("Pitch_67")) and reading.accepts(tok.token_id("Pitch_90"))


def test_an_instrument_full_at_one_onset_may_play_at_the_next(tok):
    """The grammar's cached masks must not remember which instrument was full at another onset."""
    caps = {(33, False): 1, (0, False): 4}
    g = grammar(tok, ["BOS", "Tempo_100", "Bar", "TimeSig_4/4", "Pos_0", "Program_33", "Vel_20", "Pitch_40",
                      "Dur_24", "Program_0", "Pitch_60", "Dur_24"])
    g.limit_onsets(caps)
    assert not g.allowed()[tok.token_id("Program_33")]  # the bass is full here
    for name in ("Pos_12", "Program_0", "Pitch_62", "Dur_24"):
        g.advance(tok.token_id(name))
    assert g.allowed()[tok.token_id("Program_33")]  # a new onset: the bass may come back


@pytest.fixture(scope="module")
def bundled():
    return Generator.load(str(base_model()))


def part_takes(gen, instrument, variations=3, seed=1):
    prompt, _ = read_midi(POP)
    bars = prompt.bar_starts()
    piece = prompt.slice(0, bars[20])
    stream = add_part(gen, piece, instrument, bars[12], bars[16], variations=variations,
                      sampling=SamplingConfig(seed=seed))
    return [score for score in stream.generate()]


def new_track(score, instrument):
    return next(t for t in score.tracks() if t.instrument == instrument)


def test_the_bundled_models_electric_bass_is_a_bass_line(bundled):
    # before: 31-76 notes in 4 bars, 5-6 starting at once, up to 8 sounding, up to G4 (67)
    for score in part_takes(bundled, (33, False)):
        notes = new_track(score, (33, False)).notes
        assert notes
        assert max(Counter(n.start for n in notes).values()) == 1
        assert idiom.most_at_once(notes) == 1
        assert 28 <= min(n.pitch for n in notes) and max(n.pitch for n in notes) <= 55
        assert median(n.duration for n in notes) >= 480 // 8  # no flood of 1/48 notes


def test_the_bundled_models_flute_and_drums_play_as_they_do(bundled):
    for score in part_takes(bundled, (73, False), variations=2):
        notes = new_track(score, (73, False)).notes
        assert notes and idiom.most_at_once(notes) == 1
    for score in part_takes(bundled, (0, True), variations=2):
        drums = new_track(score, (0, True))
        assert drums.notes and max(Counter(n.start for n in drums.notes).values()) <= 4
        assert all(35 <= n.pitch <= 81 for n in drums.notes)
        saved = read_midi(score_to_bytes(score))[0]
        kit = [t for t in saved.tracks() if t.drum]
        assert len(kit) == 1 and kit[0].channel == 9 and len(kit[0].notes) == len(drums.notes)  # channel 10


def test_chord_caps_are_what_the_prompts_last_bars_start_at_once():
    from core.score import Note
    notes = [Note(0, 480, p) for p in (48, 52, 55, 60)] + [Note(480, 480, 64), Note(0, 480, 40, program=33),
                                                            Note(-99_999, 480, 70, program=40)]
    caps = idiom.chord_caps(notes, 1920, instruments=[(0, False), (73, False), (0, True)])
    assert caps == {(0, False): 4, (33, False): 1, (73, False): 1, (0, True): 4}  # long ago: not counted


def test_the_bundled_models_continuation_keeps_the_prompts_density(bundled):
    """POP909 002 after 16 bars: one take of four was 3.4x as dense as the prompt's last 8 bars, with
    7 notes at one onset where the prompt has 4 at most."""
    prompt, _ = read_midi(POP.with_name("002.mid"))
    bars = prompt.bar_starts()
    prompt = prompt.slice(0, bars[16])
    per_bar = sum(1 for n in prompt.notes if n.start >= bars[8]) / 8
    stream = bundled.stream(prompt, bars=4, variations=4, sampling=SamplingConfig(seed=3))
    takes = [[], [], [], []]
    for item in stream:
        takes[item.variation].append(item.note)
    for notes in takes:
        assert 0.5 <= len(notes) / 4 / per_bar <= 2.0, len(notes) / 4 / per_bar
        assert max(Counter((n.start, n.instrument) for n in notes).values()) <= stream.chord_caps[(0, False)] == 4

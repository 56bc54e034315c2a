"""core.tokenizer on real pieces: exact round trips, quantisation of performed timing, windows, grammar,
streaming, versioning, tokens per note, and the `rwkv-music tokens` command."""
from __future__ import annotations

import json
import re
import random
from collections import Counter
from pathlib import Path

import pytest

from core.cli import main as cli_main
from core.midi import read_midi
from core.score import Note, Score, TempoChange, TimeSignature
from core.tokenizer import DURATION_STEPS, STEP_TICKS, Tokenizer, level_velocity, velocity_level

CORPUS_DIR = Path(__file__).parent / "data" / "corpus"
MAX_TOKENS_PER_NOTE = 3.5


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def corpus_paths(tmp_path_factory) -> list[Path]:
    """The checked-in real pieces; without them, a few Bach chorales and a Haydn quartet movement exported
    by music21 (real music either way)."""
    paths = sorted(CORPUS_DIR.rglob("*.mid"))
    if paths:
        return paths
    music21 = pytest.importorskip("music21")
    out = tmp_path_factory.mktemp("corpus")
    for name in ("bach/bwv10.7", "bach/bwv101.7", "bach/bwv104.6", "haydn/opus74no1/movement1"):
        path = out / (name.replace("/", "_") + ".mid")
        music21.corpus.parse(name).write("midi", fp=str(path))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def corpus(corpus_paths) -> list[tuple[str, Score]]:
    return [(p.name, read_midi(p)[0]) for p in corpus_paths]


def note_key(n: Note):
    return (n.start, n.duration, n.pitch, n.program, n.drum)


def snap(tick: int) -> int:
    """Nearest grid tick, halves up."""
    return (tick + STEP_TICKS // 2) // STEP_TICKS * STEP_TICKS


def quantised(n: Note) -> tuple:
    """What the tokenizer promises to keep of a note: onset and end on the nearest grid step (at least one
    step long), durations beyond 4 beats on the coarser duration steps, velocity in 32 levels."""
    steps = max(snap(n.start + n.duration) - snap(n.start), STEP_TICKS) // STEP_TICKS
    duration = min(DURATION_STEPS, key=lambda s: (abs(s - steps), s)) * STEP_TICKS
    return (snap(n.start), duration, n.pitch, n.program, n.drum, level_velocity(velocity_level(n.velocity)))


def tokenized_notes(notes) -> Counter:
    """What the tokenizer keeps of a list of notes: each quantised, and one note (the longest, then the
    loudest) where an instrument sounds the same pitch twice at one onset."""
    kept: dict[tuple, tuple] = {}
    for q in map(quantised, notes):
        key = (q[0], q[2], q[3], q[4])
        if key not in kept or (q[1], q[5]) > (kept[key][1], kept[key][5]):
            kept[key] = q
    return Counter(kept.values())


# --- round trips ------------------------------------------------------------------------------
def test_real_pieces_round_trip_exactly(tok, corpus):
    exact = 0
    for name, score in corpus:
        assert score.notes, name
        ids, report = tok.encode_with_report(score)
        decoded, stats = tok.decode(ids)
        assert stats.invalid == 0 and stats.incomplete == 0 and stats.finished, name
        got = Counter((*note_key(n), n.velocity) for n in decoded.notes)
        assert got == tokenized_notes(score.notes), name
        if all(quantised(n)[:2] == (n.start, n.duration) for n in score.notes):
            exact += 1  # on the grid and representable: every onset and duration kept exactly
            assert Counter(map(note_key, decoded.notes)) == Counter(q[:5] for q in tokenized_notes(score.notes))
        else:
            assert any("grid" in line or "duration" in line or "merged" in line for line in report), name
        assert [(t.tick, round(t.bpm)) for t in decoded.tempos] == [(t.tick, round(t.bpm)) for t in score.tempos]
        if not any("meter" in line for line in report):
            assert decoded.time_signatures == score.time_signatures, name
        assert tok.encode(decoded) == ids, name
    assert exact >= len(corpus) // 2, "most real pieces should be on the grid"


def test_tempo_meter_and_instruments_round_trip_exactly(tok, corpus):
    """A real piece given a tempo map, meter changes at bar lines, several instruments and drums."""
    name, piece = corpus[0]
    bar = piece.time_signatures[0].bar_ticks
    notes = [Note(n.start, n.duration, n.pitch, n.velocity, program=(n.pitch % 3) * 20) for n in piece.notes]
    notes += [Note(b, 60, 36 + (b // bar) % 10, 100, drum=True) for b in range(0, piece.end_tick, bar // 2)]
    # Bars 0-3 in the piece's meter, then 3/4 x2, 7/8 x2, 6/8 to the end; every bar start stays on the grid.
    t3 = 4 * bar
    t7 = t3 + 2 * 3 * 480
    t6 = t7 + 2 * 7 * 240
    metres = [piece.time_signatures[0], TimeSignature(t3, 3, 4), TimeSignature(t7, 7, 8), TimeSignature(t6, 6, 8)]
    tempos = [TempoChange(0, 72), TempoChange(bar + 240, 96), TempoChange(t7, 140), TempoChange(t6 + 100, 60)]
    score = Score(notes, tempos, metres)
    decoded, stats = tok.decode(tok.encode(score))
    assert stats.invalid == 0
    assert Counter((*note_key(n), n.velocity) for n in decoded.notes) == tokenized_notes(score.notes)
    assert decoded.time_signatures == score.time_signatures
    assert decoded.tempos == score.tempos
    assert decoded.bar_starts() == score.bar_starts(decoded.end_tick)


def test_velocity_keeps_32_levels(tok):
    notes = [Note(i * 120, 120, 60, v) for i, v in enumerate(range(1, 128))]
    decoded, _ = tok.decode(tok.encode(Score(notes)))
    assert len({n.velocity for n in decoded.notes}) == 32
    assert all(abs(a.velocity - b.velocity) <= 3 for a, b in zip(notes, decoded.notes))
    for v in (64, 80, 96, 100, 112, 127):  # common values come back unchanged
        assert level_velocity(velocity_level(v)) == v


def test_each_part_keeps_its_velocity_within_a_bar(tok):
    """Two parts with their own dynamics, struck together: velocities are stated once per part and bar."""
    notes = [Note(t, 240, 48, 100, program=0) for t in range(0, 1920, 240)]
    notes += [Note(t, 240, 76, 60, program=40) for t in range(0, 1920, 240)]
    ids = tok.encode(Score(notes))
    names = [tok.token_name(i) for i in ids]
    assert names.count("Vel_24") == 1 and names.count("Vel_14") == 1  # 100 and 60, one bar
    assert names.count("Program_0") + names.count("Program_40") == 8 + 1  # current part first at each onset
    decoded, _ = tok.decode(ids)
    assert sorted((n.start, n.pitch, n.velocity, n.program) for n in decoded.notes) == sorted(
        (n.start, n.pitch, n.velocity, n.program) for n in notes)


def test_performed_timing_lands_within_half_a_step(tok, corpus):
    rng = random.Random(7)
    name, piece = max(corpus, key=lambda c: len(c[1].notes))
    performed = Score([Note(max(n.start + rng.randint(-37, 37), 0), max(n.duration + rng.randint(-50, 50), 5),
                            n.pitch, rng.randint(30, 120), n.program) for n in piece.notes], piece.tempos,
                      piece.time_signatures)
    ids, report = tok.encode_with_report(performed)
    assert any("grid" in line for line in report)
    decoded, stats = tok.decode(ids)
    kept = tokenized_notes(performed.notes)  # notes jittered onto one onset with their double merge
    assert stats.invalid == 0 and len(decoded.notes) == sum(kept.values()) > 0.97 * len(performed.notes)
    got = sorted((n.pitch, n.program, n.start) for n in decoded.notes)
    assert got == sorted((q[2], q[3], q[0]) for q in kept.elements())
    originals = {}
    for n in performed.notes:
        originals.setdefault((n.pitch, n.program), []).append(n.start)
    assert all(any(abs(t - start) <= STEP_TICKS // 2 for t in originals[(pitch, program)])
               for pitch, program, start in got)
    assert tok.encode(decoded) == ids  # quantising is idempotent


def test_unsupported_and_mid_bar_meters_are_reported(tok):
    score = Score([Note(0, 480, 60), Note(13 * 480, 480, 62), Note(13 * 480 + 3 * 480, 480, 64)],
                  time_signatures=[TimeSignature(0, 13, 4), TimeSignature(13 * 480 + 3 * 480, 2, 4)])
    ids, report = tok.encode_with_report(score)
    assert any("13/4 -> 12/4" in line for line in report)
    assert any("cut short" in line for line in report)
    decoded, stats = tok.decode(ids)
    assert stats.invalid == 0
    assert [n.start for n in decoded.notes] == [n.start for n in score.notes]  # onsets survive
    assert decoded.time_signatures[-1] == TimeSignature(13 * 480 + 3 * 480, 2, 4)


# --- windows ---------------------------------------------------------------------------------
def test_window_from_any_bar_decodes_the_same_notes(tok, corpus):
    name, piece = corpus[0]
    bar = piece.time_signatures[0].bar_ticks
    score = Score([Note(n.start, n.duration, n.pitch, n.velocity, 40 if n.pitch > 60 else 42) for n in piece.notes],
                  [TempoChange(0, 80), TempoChange(2 * bar, 100), TempoChange(3 * bar + 480, 90)],
                  [piece.time_signatures[0], TimeSignature(4 * bar, 3, 4)])
    ids = tok.encode(score)
    full, _ = tok.decode(ids)
    bar_starts = full.bar_starts(max(n.start for n in full.notes))
    indices = tok.bar_indices(ids)
    assert len(indices) == len(bar_starts)
    assert tok.bar_headers(ids) == [(i, tok.header_at(ids, i)) for i in indices]
    for b, i in enumerate(indices):
        start = bar_starts[b]
        header = tok.header_at(ids, i)
        assert header[0] == tok.bos_id and header[-1] in (tok.bar_id, *tok.ids_of_kind("timesig"))
        window, stats = tok.decode(header + ids[i + 1:])
        assert stats.invalid == 0, b
        assert [note_key(n) for n in window.notes] == [
            (n.start - start, *note_key(n)[1:]) for n in full.notes if n.start >= start], b
        assert window.tempo_at(0) == full.tempo_at(start)
        assert window.time_signature_at(0).numerator == full.time_signature_at(start).numerator
        assert tok.grammar(header + ids[i + 1:]).finished  # the window is a valid sequence on its own
    with pytest.raises(ValueError):
        tok.header_at(ids, indices[1] + 1)


# --- grammar and streaming ---------------------------------------------------------------------
def test_grammar_accepts_every_encoded_piece_and_masks_agree(tok, corpus):
    for name, score in corpus[:2]:
        ids = tok.encode(score)
        g = tok.grammar()
        for step, t in enumerate(ids):
            mask = g.allowed()
            assert mask[t], (name, step, tok.token_name(t))
            if step % 37 == 0:  # the cached masks say exactly what accepts() says
                assert [bool(x) for x in mask] == [g.accepts(i) for i in range(tok.vocab_size)]
            g.advance(t)
        assert g.finished and not g.allowed().any()
        assert g.bars == len(tok.bar_indices(ids))


def test_grammar_refuses_invalid_tokens(tok):
    g = tok.grammar()
    with pytest.raises(ValueError):
        g.advance(tok.bar_id)  # BOS first
    g.advance_many([tok.bos_id, tok.tempo_id(120), tok.bar_id])
    with pytest.raises(ValueError):
        g.advance(tok.pos_id(0))  # the first bar states its meter
    g.advance(tok.timesig_id(3, 4))
    with pytest.raises(ValueError):
        g.advance(tok.pos_id(72))  # a 3/4 bar has positions 0..71
    g.advance(tok.pos_id(24))
    with pytest.raises(ValueError):
        g.advance(tok.pitch_id(60))  # the first note of a bar states its instrument and velocity
    g.advance_many([tok.instrument_id(0), tok.velocity_id(80), tok.pitch_id(60), tok.duration_id(24)])
    with pytest.raises(ValueError):
        g.advance(tok.pos_id(24))  # positions increase
    assert g.position == 24 * STEP_TICKS
    g.advance_many([tok.pitch_id(64), tok.duration_id(12), tok.bar_id])  # same instrument and velocity
    assert g.bars == 2 and g.position == 72 * STEP_TICKS
    g.advance(tok.pos_id(0))
    with pytest.raises(ValueError):
        g.advance(tok.velocity_id(80))  # instrument forgotten at the bar line


def test_instrument_restriction(tok, corpus):
    name, score = corpus[0]
    prompt = tok.encode(score, eos=False)
    g = tok.grammar(prompt, instruments={(40, False), (0, True)})
    mask = g.allowed()
    allowed_instruments = {tok.token_name(i) for i in tok.ids_of_kind("instrument") if mask[i]}
    assert allowed_instruments <= {"Program_40", "Drums"}
    assert not any(mask[i] for i in tok.ids_of_kind("pitch"))  # program 0 is in force: must switch first
    with pytest.raises(ValueError):
        tok.grammar(instruments=set())


def test_stream_decoder_emits_each_note_at_its_duration(tok, corpus):
    name, score = corpus[0]
    ids = tok.encode(score)
    dec = tok.stream_decoder()
    streamed = []
    for t in ids:
        got = dec.feed(t)
        if tok.kind(t) == "duration":
            assert len(got) == 1 and got[0].pitch == dec.grammar.pitch and got[0].start == dec.position
        else:
            assert got == []
        streamed += got
    decoded, _ = tok.decode(ids)
    assert sorted(map(note_key, streamed)) == sorted(map(note_key, decoded.notes))
    assert [n.start for n in streamed] == sorted(n.start for n in streamed)  # in time order
    assert dec.tempos == decoded.tempos and dec.time_signatures == decoded.time_signatures
    assert dec.finished and dec.invalid == 0


# --- vocabulary, versioning, efficiency ------------------------------------------------------------
def test_version_is_stored_and_checked(tok):
    d = json.loads(json.dumps(tok.to_dict()))
    assert Tokenizer.from_dict(d).vocab_size == tok.vocab_size
    with pytest.raises(ValueError, match="tokenizer"):
        Tokenizer.from_dict({**d, "version": "rwkvmusic-tok-0"})
    with pytest.raises(ValueError, match="vocabulary"):
        Tokenizer.from_dict({**d, "tokens": d["tokens"][:-1] + ["Dur_9999"]})


def test_vocabulary_names_are_unique_and_ids_fixed(tok):
    names = [tok.token_name(i) for i in range(tok.vocab_size)]
    assert len(set(names)) == tok.vocab_size
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.bar_id) == (0, 1, 2, 3)
    assert tok.token_name(tok.tempo_id(20)) == "Tempo_20" and tok.token_name(tok.tempo_id(300)) == "Tempo_300"
    assert tok.token_name(tok.duration_id(96)) == "Dur_96" and tok.token_name(tok.duration_id(10 ** 6)) == "Dur_1536"
    assert tok.kind(tok.vocab_size) == "invalid"


def test_tokens_per_note_on_real_corpus(tok, corpus):
    notes = sum(len(s.notes) for _, s in corpus)
    tokens = sum(len(tok.encode(s)) for _, s in corpus)
    per_note = tokens / notes
    print(f"\ntokens per note over {len(corpus)} real pieces ({notes} notes): {per_note:.3f}")
    assert per_note <= MAX_TOKENS_PER_NOTE


# --- command line ----------------------------------------------------------------------------------
def test_cli_tokens_json_and_listing(tok, corpus_paths, capsys):
    path = corpus_paths[0]
    assert cli_main(["tokens", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    score, _ = read_midi(path)
    assert out["tokens"] == tok.encode(score)
    assert out["notes"] == len(score.notes) and out["tokenizer"] == Tokenizer.VERSION
    assert out["tokens_per_note"] == pytest.approx(len(out["tokens"]) / len(score.notes), abs=1e-3)
    assert cli_main(["tokens", str(path)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert re.match(r"BOS (Flat )?Tempo_", listing[0]) and listing[1].startswith("Bar TimeSig_")


def test_cli_tokens_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"this is not a MIDI file")
    assert cli_main(["tokens", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert cli_main(["tokens", str(tmp_path / "missing.mid")]) == 2
    assert "error: " in capsys.readouterr().err

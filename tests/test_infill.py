"""Infill (core/infill.py) and the `infill` / `accompany` verbs, with a small real RWKV-7 (random weights,
tokenizer v2): the grammar makes every middle valid whatever the weights. Files written by the CLI are read
back with mido, independently of core.midi."""
from __future__ import annotations

from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import mido
import pytest
import torch

from core.generate import Generator, SamplingConfig
from core.infill import add_part, bar_range, infill, parse_bar_range, token_bar_lines
from core.midi import read_midi
from core.score import TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature
from core.tokenizer import MAX_GAP_BARS, STEP_TICKS, Tokenizer, playable_range
from tests.notes import note_key

CORPUS = Path(__file__).parent / "data" / "corpus"
CHORALE = CORPUS / "bach" / "bwv10.7.mid"  # 4 voices on 4 tracks, 4/4, 22 bars, lyrics on the soprano
BAR_3_4 = 3 * TICKS_PER_BEAT
BAR_2_4 = 2 * TICKS_PER_BEAT
BASS = (33, False)


@pytest.fixture(scope="module")
def piece():
    """12 bars: 8 of 3/4 then 4 of 2/4 (from tick 8 * BAR_3_4); 100 BPM, 90 from beat 2 of bar 7; a piano
    melody of eighths and a bass note per bar."""
    notes, tick = [], 0
    for bar in range(12):
        length = BAR_3_4 if bar < 8 else BAR_2_4
        notes += [Note(tick + i * 240, 240, 60 + (bar * 3 + i * 5) % 12, 90) for i in range(length // 240)]
        notes.append(Note(tick, length, 36 + bar % 5, 70, program=33))
        tick += length
    return Score(notes, [TempoChange(0, 100), TempoChange(6 * BAR_3_4 + TICKS_PER_BEAT, 90)],
                 [TimeSignature(0, 3, 4), TimeSignature(8 * BAR_3_4, 2, 4)])


def middle_notes(tok, prompt, tokens, origin_tick):
    """Notes the tokens after `prompt` decode to, in the piece's ticks; and the decoder's stats."""
    dec = tok.stream_decoder()
    dec.feed_many(prompt)
    before = len(dec.notes)
    origin = origin_tick - dec.grammar.gap_tick
    dec.feed_many(tokens)
    notes = [Note(n.start + origin, n.duration, n.pitch, n.velocity, n.program, n.drum) for n in dec.notes[before:]]
    return notes, dec


# --- bar ranges ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bars_6_to_10(gen, piece):
    """Bars 6-10 (a tempo change in bar 7, the meter change at bar 9), two variations, one run."""
    start, end = bar_range(piece, gen.tokenizer, 6, 10)
    stream = infill(gen, piece, start, end, variations=2, sampling=SamplingConfig(seed=11))
    streamed = [[] for _ in range(2)]
    for item in stream:
        streamed[item.variation].append(item.note)
    return stream, streamed


def test_the_range_is_bar_exact_and_valid_in_the_pieces_tempo_and_meter(gen, piece, bars_6_to_10):
    stream, streamed = bars_6_to_10
    tok = gen.tokenizer
    start, end = 5 * BAR_3_4, 8 * BAR_3_4 + 2 * BAR_2_4
    assert (stream.start_tick, stream.end_tick) == (start, end) and len(stream.chunks) == 1
    for v, notes in enumerate(streamed):
        assert notes, "the model wrote something"
        prompt, tokens = stream.prompts[v][0], stream.tokens[v][0]
        assert tok.gap_id(5) in prompt and prompt[-4:-1] == [tok.fill_id, tok.tempo_id(100), tok.bar_id]
        decoded, dec = middle_notes(tok, prompt, tokens, start)
        stats = dec.stats()
        assert stats.invalid == 0 and stats.incomplete == 0 and stats.finished
        assert stream.reasons[v] == ["eos"] and tokens.count(tok.bar_id) == 4  # 5 bars, the first in the prompt
        # the tempo change and the meter change of the range are there, where the piece has them; nothing else
        assert [tok.token_name(t) for t in tokens if tok.kind(t) in ("tempo", "timesig")] == ["Tempo_90", "TimeSig_2/4"]
        assert (6 * BAR_3_4 + TICKS_PER_BEAT, 90.0) in [(t.tick + start - dec.grammar.gap_tick, t.bpm)
                                                        for t in dec.tempos]
        # what streamed is what the tokens say (durations cut at the range's end)
        assert sorted((n.start, n.pitch, n.instrument, n.velocity, min(n.duration, end - n.start)) for n in decoded) \
            == sorted((n.start, n.pitch, n.instrument, n.velocity, n.duration) for n in notes)
        for n in notes:
            assert start <= n.start < end and n.end <= end
            assert n.start % STEP_TICKS == 0
            lo, hi = playable_range(*n.instrument)
            assert lo <= n.pitch <= hi
            assert n.instrument in {(0, False), BASS}  # the range's own instruments
        result = stream.score(notes)
        assert result.tempos == piece.tempos and result.time_signatures == piece.time_signatures
        outside = [note_key(n) for n in piece.notes if not start <= n.start < end]
        assert sorted(note_key(n) for n in result.notes if not start <= n.start < end) == sorted(outside)
        placed = sorted((n.start, n.pitch, n.instrument, n.velocity, n.duration) for n in result.notes
                        if start <= n.start < end)
        assert [p[:4] for p in placed] == sorted((n.start, n.pitch, n.instrument, n.velocity) for n in notes)
        by_key = {(n.start, n.pitch, n.instrument): n.duration for n in notes}
        assert all(0 < p[4] <= by_key[p[:3]] for p in placed)  # a note re-struck while it sounds ends there
        for a, b in zip(placed, placed[1:]):
            assert not (a[1:3] == b[1:3] and b[0] < a[0] + a[4]) or a[0] == b[0]


def test_same_seed_same_notes_and_variations_share_one_batched_pass(gen, piece, bars_6_to_10):
    stream, streamed = bars_6_to_10
    start, end = stream.start_tick, stream.end_tick
    again = infill(gen, piece, start, end, variations=2, sampling=SamplingConfig(seed=11))
    assert [[note_key(n) for n in s.notes] for s in again.generate()] == \
           [[note_key(n) for n in stream.score(notes).notes] for notes in streamed]
    other = infill(gen, piece, start, end, sampling=SamplingConfig(seed=12)).generate()[0]
    assert [note_key(n) for n in other.notes] != [note_key(n) for n in stream.score(streamed[0]).notes]
    assert [note_key(n) for n in streamed[0]] != [note_key(n) for n in streamed[1]]
    # one model step per token position for both variations together, and one prefill for both
    lengths = [len(t[0]) for t in stream.tokens]
    assert stream.steps == max(lengths) - 1 < sum(lengths)
    assert stream.prompts[0] == stream.prompts[1]


def test_locked_notes_are_forced_at_their_onsets_and_kept(gen, piece):
    tok = gen.tokenizer
    start, end = bar_range(piece, tok, 3, 5)
    in_range = [n for n in piece.notes if start <= n.start < end]
    locked = [n for n in in_range if n.program == 0][1::3]
    # a kept note outside what the model may play (a bass far above its range) is forced all the same
    odd = Note(start + BAR_3_4 + 480, 240, 100, 64, program=33)
    score = Score(piece.notes + [odd], list(piece.tempos), list(piece.time_signatures))
    locked.append(odd)
    stream = infill(gen, score, start, end, variations=2, sampling=SamplingConfig(seed=4), locked=locked)
    results = []
    for v, result in enumerate(stream.generate()):
        decoded, dec = middle_notes(tok, stream.prompts[v][0], stream.tokens[v][0], start)
        assert dec.stats().invalid == 0 and dec.stats().finished
        got = {(n.start, n.pitch, n.instrument): n for n in decoded}
        for n in locked:  # in the token stream, at their place
            assert (n.start, n.pitch, n.instrument) in got
            assert got[(n.start, n.pitch, n.instrument)].velocity == (n.velocity - 1) // 4 * 4 + 4
        kept = sorted(note_key(n) for n in result.notes if start <= n.start < end and
                      (n.start, n.pitch, n.instrument) in {(x.start, x.pitch, x.instrument) for x in locked})
        assert kept == sorted(note_key(n) for n in locked)  # exactly as they were
        new = [n for n in result.notes if start <= n.start < end and note_key(n) not in map(note_key, locked)]
        assert len(new) > 0, "the model writes around them"
        assert len(decoded) == len(new) + len(locked)
        results.append(result)
    unlocked = [n for n in in_range if n not in locked]
    assert not all(note_key(n) in map(note_key, results[0].notes) for n in unlocked)


def test_instruments_choose_what_is_rewritten_and_the_rest_of_the_range_is_kept(gen, piece):
    start, end = bar_range(piece, gen.tokenizer, 2, 4)
    stream = infill(gen, piece, start, end, sampling=SamplingConfig(seed=5), instruments=[(0, False)])
    notes = [item.note for item in stream]
    assert notes and {n.instrument for n in notes} == {(0, False)}
    result = stream.score(notes)
    bass = lambda s: sorted(note_key(n) for n in s.notes if n.instrument == BASS)  # noqa: E731
    assert bass(result) == bass(piece)
    decoded, _ = middle_notes(gen.tokenizer, stream.prompts[0][0], stream.tokens[0][0], start)
    assert {n.start for n in decoded if n.instrument == BASS} == {n.start for n in piece.notes
                                                                   if n.instrument == BASS and start <= n.start < end}


def test_replaces_names_what_a_variation_takes_the_place_of(gen, piece):
    """What the app dims and removes on accept: in the range, not locked, of the instruments written; the
    document's notes (longer than the token view's where a pedal holds them) match by start, pitch, instrument."""
    start, end = bar_range(piece, gen.tokenizer, 3, 4)
    in_range = [n for n in piece.notes if start <= n.start < end]
    locked = [n for n in in_range if n.program == 0][:2]
    stream = infill(gen, piece, start, end, instruments=[(0, False)], locked=locked)
    expected = [n for n in in_range if n.program == 0 and n not in locked]
    assert expected and [n for n in piece.notes if stream.replaces(n)] == expected
    longer = [Note(n.start, n.duration + 480, n.pitch, n.velocity, n.program, n.drum) for n in piece.notes]
    assert [stream.replaces(n) for n in longer] == [stream.replaces(n) for n in piece.notes]
    left = stream.score([])  # no new notes: what stays is every note it does not replace
    assert sorted(note_key(n) for n in left.notes) == sorted(note_key(n) for n in piece.notes if not stream.replaces(n))
    part = add_part(gen, piece, BASS, start, end)
    assert not any(part.replaces(n) for n in piece.notes)


def test_a_range_longer_than_16_bars_is_done_in_chunks(gen):
    tok = gen.tokenizer
    notes = [Note(i * 480, 480, 60 + (i * 7) % 12, 80) for i in range(24 * 4)]
    piece = Score(notes, [TempoChange(0, 120)], [TimeSignature(0, 4, 4)])
    start, end = bar_range(piece, tok, 3, 22)  # 20 bars
    stream = infill(gen, piece, start, end, variations=2, sampling=SamplingConfig(seed=2))
    scores = stream.generate()
    assert [(c.start, c.end, c.bars) for c in stream.chunks] == [(2 * 1920, 12 * 1920, 10), (12 * 1920, 22 * 1920, 10)]
    for v, result in enumerate(scores):
        assert stream.reasons[v] == ["eos", "eos"]
        for c, chunk in enumerate(stream.chunks):
            prompt = stream.prompts[v][c]
            assert tok.gap_id(chunk.bars) in prompt
            decoded, dec = middle_notes(tok, prompt, stream.tokens[v][c], chunk.start)
            assert dec.stats().invalid == 0 and dec.stats().finished
            assert dec.grammar.fill_bars == chunk.bars <= MAX_GAP_BARS
            assert decoded and all(chunk.start <= n.start < chunk.end for n in decoded)
        new = [n for n in result.notes if start <= n.start < end]
        assert {n.start // 1920 for n in new} & set(range(2, 12)) and {n.start // 1920 for n in new} & set(range(12, 22))
        assert sorted(note_key(n) for n in result.notes if not start <= n.start < end) == sorted(
            note_key(n) for n in notes if not start <= n.start < end)
    # the second chunk reads the first as each variation regenerated it
    assert stream.prompts[0][1] != stream.prompts[1][1] and stream.prompts[0][0] == stream.prompts[1][0]
    first_chunk, _ = middle_notes(tok, stream.prompts[0][0], stream.tokens[0][0], start)
    dec = tok.stream_decoder()
    dec.feed_many(stream.prompts[0][1])
    read_back = {(n.pitch, n.start) for n in dec.notes}
    origin = 12 * 1920 - dec.grammar.gap_tick
    assert {(n.pitch, n.start - origin) for n in first_chunk if n.start >= 12 * 1920 - 8 * 1920} <= read_back


def test_a_style_steers_the_infill(tiny_checkpoint, gen, piece, tmp_path):
    from core.network.checkpoint import save_state_file

    cfg = gen.model.config
    torch.manual_seed(0)
    path = tmp_path / "style.pth"
    save_state_file(str(path), torch.randn(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size), gen.model)
    styled = Generator.load(tiny_checkpoint, str(path))
    start, end = bar_range(piece, gen.tokenizer, 2, 3)
    plain = infill(gen, piece, start, end, sampling=SamplingConfig(seed=1))
    steered = infill(styled, piece, start, end, sampling=SamplingConfig(seed=1))
    assert plain.prompt == steered.prompt
    assert [note_key(i.note) for i in plain] != [note_key(i.note) for i in steered]
    assert steered.reasons == [["eos"]]


def test_ranges_widen_to_bar_lines_and_bad_ranges_are_refused(gen, piece):
    tok = gen.tokenizer
    stream = infill(gen, piece, BAR_3_4 + 100, 2 * BAR_3_4 + 1)
    assert (stream.start_tick, stream.end_tick) == (BAR_3_4, 3 * BAR_3_4)
    assert token_bar_lines(piece, tok, until=piece.end_tick)[:10] == piece.bar_starts()[:10]
    for empty in ((500, 500), (900, 400), (-20, 0)):
        with pytest.raises(ValueError, match="is empty"):
            infill(gen, piece, *empty)
    assert parse_bar_range("5-8") == (5, 8) and parse_bar_range(" 3 ") == (3, 3)
    for bad in ("8-5", "0-2", "a-b", "1-2-3", ""):
        with pytest.raises(ValueError, match="bars"):
            parse_bar_range(bad)


def test_a_model_without_infill_tokens_is_refused(tmp_path, piece):
    from core.network.checkpoint import save_checkpoint
    from core.network.model import ModelConfig, RWKV7

    v1 = Tokenizer("rwkvmusic-tok-1")
    torch.manual_seed(0)
    path = tmp_path / "v1.pth"
    save_checkpoint(RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=v1.vocab_size)), str(path),
                    {"tokenizer": v1.to_dict()})
    old = Generator.load(str(path))
    with pytest.raises(ValueError, match="no infill tokens"):
        infill(old, piece, 0, BAR_3_4)
    with pytest.raises(ValueError, match="no infill tokens"):
        add_part(old, piece, BASS)


# --- adding a part -------------------------------------------------------------------------------
def test_add_part_keeps_every_note_and_writes_one_new_track(gen, piece):
    tok = gen.tokenizer
    melody = Score([n for n in piece.notes if n.program == 0], list(piece.tempos), list(piece.time_signatures))
    stream = add_part(gen, melody, BASS, variations=2, sampling=SamplingConfig(seed=9))
    assert (stream.start_tick, stream.end_tick) == (0, 8 * BAR_3_4 + 4 * BAR_2_4)
    for v, result in enumerate(stream.generate()):
        prompt, tokens = stream.prompts[v][0], stream.tokens[v][0]
        assert prompt[-6:-3] == [tok.part_id, tok.instrument_id(*BASS), tok.fill_id]
        assert tok.instrument_id(*BASS) not in prompt[:-6]  # the context holds every other instrument only
        decoded, dec = middle_notes(tok, prompt, tokens, 0)
        assert dec.stats().invalid == 0 and dec.stats().finished and tokens.count(tok.bar_id) == 11
        tracks = result.tracks()
        assert [t.label for t in tracks] == [t.label for t in melody.tracks()] + ["Electric Bass (finger)"]
        assert [note_key(n) for n in tracks[0].notes] == [note_key(n) for n in melody.tracks()[0].notes]
        new = tracks[-1].notes
        assert new and all(n.instrument == BASS and 23 <= n.pitch <= 67 for n in new)
        assert all(0 <= n.start and n.end <= stream.end_tick for n in new)


def test_add_part_over_a_long_range_goes_on_from_the_last_chunk(gen):
    tok = gen.tokenizer
    notes = [Note(i * 480, 480, 60 + (i * 5) % 12, 80) for i in range(24 * 4)]
    piece = Score(notes, [TempoChange(0, 120)], [TimeSignature(0, 4, 4)])
    stream = add_part(gen, piece, BASS, sampling=SamplingConfig(seed=3))
    result = stream.generate()[0]
    assert [(c.start // 1920, c.end // 1920, c.given) for c in stream.chunks] == [(0, 16, 0), (16, 24, 4)]
    part = result.tracks()[-1].notes
    # the second chunk's prompt holds bars 13-16 of the part as the first chunk wrote it
    dec = tok.stream_decoder()
    dec.feed_many(stream.prompts[0][1])
    given = sorted((n.start + 12 * 1920, n.pitch) for n in dec.notes if n.instrument == BASS)
    assert given == sorted((n.start, n.pitch) for n in part if 12 * 1920 <= n.start < 16 * 1920)
    assert any(n.start >= 16 * 1920 for n in part)
    decoded, dec = middle_notes(tok, stream.prompts[0][1], stream.tokens[0][1], 12 * 1920)
    assert dec.stats().invalid == 0 and dec.stats().finished and dec.grammar.fill_bars == 12


def test_add_part_keeps_the_notes_that_instrument_already_has(gen, piece):
    start, end = bar_range(piece, gen.tokenizer, 1, 4)
    stream = add_part(gen, piece, BASS, start, end, sampling=SamplingConfig(seed=6))
    result = stream.generate()[0]
    assert sorted(note_key(n) for n in result.tracks()[:-1][0].notes + result.tracks()[:-1][1].notes) == \
           sorted(note_key(n) for n in piece.notes)
    decoded, _ = middle_notes(gen.tokenizer, stream.prompts[0][0], stream.tokens[0][0], start)
    assert {n.start for n in piece.notes if n.instrument == BASS and n.start < end} <= {n.start for n in decoded}


# --- the command line, read back with mido ---------------------------------------------------------
def mido_notes(path):
    """{track name: Counter of (channel, pitch, velocity, start, end)} in beats, and the conductor's
    tempo and meter events, read with mido alone."""
    mid = mido.MidiFile(str(path))
    tracks = {}
    meta = []
    for track in mid.tracks:
        now, name, sounding = 0, "", defaultdict(list)
        notes = Counter()
        for msg in track:
            now += msg.time
            beat = Fraction(now, mid.ticks_per_beat)
            if msg.type == "track_name":
                name = msg.name
            elif msg.type in ("set_tempo", "time_signature"):
                meta.append((beat, str(msg.copy(time=0))))
            elif msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)].append((beat, msg.velocity))
            elif msg.type in ("note_on", "note_off"):
                begin, velocity = sounding[(msg.channel, msg.note)].pop(0)
                notes[(msg.channel, msg.note, velocity, begin, beat)] += 1
        tracks[name] = notes
    return tracks, sorted(meta)


def split(notes: Counter, start: Fraction, end: Fraction):
    inside = Counter({k: c for k, c in notes.items() if start <= k[3] < end})
    return notes - inside, inside


def test_cli_infill_end_to_end_on_a_real_file(tiny_checkpoint, tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "out.mid"
    assert main(["infill", "--model", tiny_checkpoint, "--in", str(CHORALE), "--bars", "5-8", "--variations", "2",
                 "--seed", "1", "-o", str(out)]) == 0
    assert "out-2.mid" in capsys.readouterr().out
    start, end = Fraction(4 * 4), Fraction(8 * 4)  # 4/4: bars 5-8 are beats 16..32
    original, original_meta = mido_notes(CHORALE)
    runs = []
    for v in (1, 2):
        written, meta = mido_notes(tmp_path / f"out-{v}.mid")
        assert meta == original_meta
        assert set(original) <= set(written)
        new = Counter()
        for name, notes in original.items():
            kept, _ = split(notes, start, end)
            outside, inside = split(written[name], start, end)
            assert outside == kept, f"track {name!r} changed outside bars 5-8"
            new += inside
        for name in set(written) - set(original):
            outside, inside = split(written[name], start, end)
            assert not outside
            new += inside
        assert new and all(start <= k[3] < k[4] <= end for k in new)
        assert all(k[3] * TICKS_PER_BEAT % STEP_TICKS == 0 for k in new)
        runs.append(new)
    assert runs[0] != runs[1]
    # the soprano's lyrics and every other event are still there
    lyrics = lambda p: [m.text for t in mido.MidiFile(str(p)).tracks for m in t if m.type == "lyrics"]  # noqa: E731
    assert lyrics(tmp_path / "out-1.mid") == lyrics(CHORALE)
    # the same seed gives the same file
    assert main(["infill", "--model", tiny_checkpoint, "--in", str(CHORALE), "--bars", "5-8", "--variations", "2",
                 "--seed", "1", "-o", str(tmp_path / "again.mid")]) == 0
    assert (tmp_path / "again-2.mid").read_bytes() == (tmp_path / "out-2.mid").read_bytes()


def test_cli_accompany_end_to_end_on_a_real_file(tiny_checkpoint, tmp_path, capsys):
    from core.cli import main

    out = tmp_path / "bass.mid"
    assert main(["accompany", "--model", tiny_checkpoint, "--in", str(CHORALE), "--instrument",
                 "Electric Bass (finger)", "--bars", "1-16", "--seed", "2", "-o", str(out)]) == 0
    assert "new part in bars 1-16" in capsys.readouterr().out
    original, original_meta = mido_notes(CHORALE)
    written, meta = mido_notes(out)
    assert meta == original_meta
    for name, notes in original.items():
        assert written[name] == notes, f"track {name!r} changed"
    added = [name for name in written if name not in original]
    assert added == ["Electric Bass (finger)"]
    new = written["Electric Bass (finger)"]
    channels = {k[0] for k in new}
    assert new and len(channels) == 1 and not channels & {k[0] for n in original.values() for k in n}
    assert all(k[4] <= 16 * 4 and 23 <= k[1] <= 67 for k in new)
    programs = [m.program for t in mido.MidiFile(str(out)).tracks for m in t
                if m.type == "program_change" and m.channel in channels]
    assert programs == [33]
    # instrument by program number, the whole piece by default
    assert main(["accompany", "--model", tiny_checkpoint, "--in", str(CHORALE), "--instrument", "33",
                 "--seed", "2", "-o", str(tmp_path / "whole.mid")]) == 0
    score, _ = read_midi(tmp_path / "whole.mid")
    assert max(n.start for n in score.notes if n.program == 33) >= 16 * 1920


def test_cli_uses_the_bundled_model_by_default_and_refuses_a_v1_model(tiny_checkpoint, tmp_path, monkeypatch,
                                                                     capsys):
    import shutil

    from core.cli import main
    from core.network.checkpoint import save_checkpoint
    from core.network.model import ModelConfig, RWKV7

    resources = tmp_path / "resources"
    resources.mkdir()
    shutil.copy(tiny_checkpoint, resources / "rwkv7-music-base.pth")
    monkeypatch.setenv("RWKV_MUSIC_RESOURCES", str(resources))
    assert main(["infill", "--in", str(CHORALE), "--bars", "2", "--seed", "1", "-o", str(tmp_path / "o.mid")]) == 0
    assert read_midi(tmp_path / "o.mid")[0].notes

    v1 = Tokenizer("rwkvmusic-tok-1")
    save_checkpoint(RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=v1.vocab_size)),
                    str(resources / "rwkv7-music-base.pth"), {"tokenizer": v1.to_dict()})
    capsys.readouterr()
    for verb in (["infill", "--bars", "2"], ["accompany", "--instrument", "drums"]):
        assert main(verb + ["--in", str(CHORALE), "-o", str(tmp_path / "x.mid")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "no infill tokens" in err and err.count("\n") == 1
    assert not (tmp_path / "x.mid").exists()
    assert main(["infill", "--model", tiny_checkpoint, "--in", str(CHORALE), "--bars", "9-2", "-o", "x.mid"]) == 2
    assert main(["accompany", "--model", tiny_checkpoint, "--in", str(CHORALE), "--instrument", "Bass",
                 "-o", "x.mid"]) == 2
    assert "ambiguous" in capsys.readouterr().err

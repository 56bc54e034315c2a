"""core.training.data: scanning real MIDI folders, windows that keep tempo and meter, aligned examples."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.training import data as D
from core.training.augment import augment_tokens
from core.midi import read_midi
from core.tokenizer import Tokenizer
from tests.folders import CORPUS, corpus_files, make_folder


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def pieces(tok, tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("data"), 4, broken=False)
    found, _ = D.scan_folder(folder, tok, cache_dir=folder.parent / "cache")
    return found


# --- examples: inputs, targets and mask always align -------------------------------------------
@pytest.mark.parametrize("n_tokens", [0, 1, 2, 17, 33, 64, 65, 200])
def test_build_example_aligns_for_every_length(n_tokens):
    ctx = 64
    tokens = list(range(5, 5 + n_tokens))
    ex = D.build_example(tokens, ctx, pad_id=0)
    T = len(ex.inputs)
    assert len(ex.targets) == T and len(ex.mask) == T
    assert T % D.PAD_MULTIPLE == 0 and T >= D.PAD_MULTIPLE
    n_pairs = min(max(n_tokens - 1, 0), ctx)
    assert ex.mask.sum() == n_pairs
    assert T <= max(D.PAD_MULTIPLE, -(-ctx // D.PAD_MULTIPLE) * D.PAD_MULTIPLE)
    for i in range(n_pairs):  # target i is the token after input i
        assert ex.inputs[i] == tokens[i] and ex.targets[i] == tokens[i + 1]
    assert (ex.inputs[n_pairs:] == 0).all() and (ex.targets[n_pairs:] == 0).all()
    assert (ex.mask[n_pairs:] == 0).all()


def test_completion_only_masks_the_header():
    tokens = list(range(10, 40))
    ex = D.build_example(tokens, 64, loss_from=4)
    # tokens 4.. are scored: they are the targets of inputs 3..
    assert ex.mask[:3].sum() == 0 and ex.mask[3:29].all() and ex.mask[29:].sum() == 0
    assert ex.targets[3] == tokens[4]


def test_batch_of_every_case_runs_through_the_real_model(tok):
    """All-padding, one token, exact length and too long in one batch: shapes agree, loss is finite,
    and padding never changes a row's loss (the bug that crashed earlier versions on batch one)."""
    from core.network.model import ModelConfig, RWKV7
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=tok.vocab_size))
    ctx = 32
    rng = random.Random(0)
    seqs = [[], [tok.bos_id], [rng.randrange(4, tok.vocab_size) for _ in range(ctx + 1)],
            [rng.randrange(4, tok.vocab_size) for _ in range(3 * ctx)], [tok.bos_id, 7, 9, 11, 13]]
    inputs, targets, mask = D.collate([D.build_example(s, ctx) for s in seqs])
    assert inputs.shape == targets.shape == mask.shape == (len(seqs), ctx)
    logits = model(inputs)
    assert logits.shape[:2] == targets.shape
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(mask)
    row_loss = (nll * mask).sum(1)
    assert torch.isfinite(row_loss).all() and row_loss[0] == 0 and row_loss[1] == 0
    # the short row alone, unpadded beyond 16, scores the same
    alone_in, alone_tg, alone_mask = D.collate([D.build_example(seqs[4], ctx)])
    alone = (F.cross_entropy(model(alone_in)[0], alone_tg[0], reduction="none") * alone_mask[0]).sum()
    torch.testing.assert_close(alone, row_loss[4], rtol=1e-5, atol=1e-5)


# --- windows: every window starts with the tempo and meter in force -----------------------------
@pytest.mark.parametrize("ctx", [32, 96, 256])
def test_windows_restate_tempo_and_meter_and_stay_valid(tok, pieces, ctx):
    windows = D.make_windows(pieces, tok, ctx)
    assert len(windows) >= len(pieces)
    for w in windows:
        tokens, head = D.window_tokens(pieces, w)
        ids = [int(t) for t in pieces[w.piece].tokens]
        assert 2 <= len(tokens) <= ctx + 1
        tok.grammar(tokens)  # raises unless the window is a valid start of a piece
        if w.start == 0:
            assert head == 0
            continue
        g = tok.grammar()
        for t in ids[:w.start]:
            g.advance(t)  # the piece up to the window's first token
        h = tok.grammar(tokens[:head])
        assert tokens[0] == tok.bos_id and h.tempo == g.tempo and h.meter == g.meter and h.bars >= 1


def _notes_by_token(tok, ids):
    """(index of the note's last token, (onset within its bar, duration, pitch, velocity, program, drum))."""
    dec = tok.stream_decoder()
    out = []
    for i, t in enumerate(ids):
        for n in dec.feed(t):
            out.append((i, (n.start - dec.grammar.bar_start, n.duration, n.pitch, n.velocity, n.program, n.drum)))
    return out


@pytest.mark.parametrize("ctx", [32, 48, 128])
def test_windows_inside_long_bars_play_the_same_notes(tok, ctx):
    """Bach chorale bars are longer than 32 tokens: windows then start at an onset inside a bar, with
    the instrument and velocity restated. Every window decodes to exactly the piece's notes there."""
    piece = sorted(CORPUS.rglob("bach/*.mid"))[0]
    ids = tok.encode(read_midi(piece)[0])
    pieces = [D.Piece("p.mid", "0", np.asarray(ids, dtype=np.int32), 0)]
    windows = D.make_windows(pieces, tok, ctx)
    mid_bar = [w for w in windows if any(tok.kind(t) == "pos" for t in w.header)]
    assert (len(mid_bar) > 0) == (ctx < 64)
    original = _notes_by_token(tok, ids)
    for w in windows:
        tokens, head = D.window_tokens(pieces, w)
        tok.grammar(tokens)
        expected = [n for i, n in original if w.start <= i < w.end]
        got = [n for i, n in _notes_by_token(tok, tokens) if i >= head]
        assert got == expected and got, (w.start, w.end)


@pytest.mark.parametrize("ctx", [32, 64, 256])
def test_windows_cover_the_whole_piece(tok, pieces, ctx):
    """Every token is learnt, EOS included, even where one bar is longer than the context (the
    window then goes on from an onset inside the bar)."""
    for i, p in enumerate(pieces):
        covered = np.zeros(len(p.tokens), dtype=bool)
        for w in (w for w in D.make_windows(pieces, tok, ctx) if w.piece == i):
            covered[w.start:w.end] = True
        # the only tokens a window may skip are Bars, which its header restates
        assert all(p.tokens[j] == tok.bar_id for j in np.flatnonzero(~covered)), ctx
        assert covered[-1]


def test_context_longer_than_the_piece_gives_one_whole_window(tok, pieces):
    p = min(pieces, key=lambda p: len(p.tokens))
    ctx = len(p.tokens) * 3
    windows = D.make_windows([p], tok, ctx)
    assert windows == [D.Window(0, 0, len(p.tokens), ())]
    ex = D.build_example(D.window_tokens([p], windows[0])[0], ctx)
    assert ex.mask.sum() == len(p.tokens) - 1 and ex.targets[len(p.tokens) - 2] == tok.eos_id


def test_short_tail_window_gets_more_context(tok, pieces):
    ctx = 96
    for i, p in enumerate(pieces):
        ws = [w for w in D.make_windows(pieces, tok, ctx) if w.piece == i]
        if len(ws) > 1:
            tail = ws[-1]
            assert len(tail.header) + tail.end - tail.start >= D.MIN_CONTEXT_RATIO * (ctx + 1) or \
                len(tail.header) + tail.end - ws[-2].start > ctx + 1


# --- scanning ------------------------------------------------------------------------------------
def test_scan_reads_nested_folder_skips_broken_files_and_caches(tok, tmp_path):
    folder = make_folder(tmp_path, 3)
    cache = tmp_path / "cache"
    pieces, report = D.scan_folder(folder, tok, cache_dir=cache)
    assert len(pieces) == 3 and report.from_cache == 0
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert set(skipped) == {"nested/deeper/noise.mid", "cut.midi"}
    assert all(r and "\n" not in r for r in skipped.values())
    for p in pieces:  # the tokens are exactly what the tokenizer gives for the file
        assert list(p.tokens) == tok.encode(read_midi(folder / p.path)[0])
    assert report.notes == sum(p.notes for p in pieces) and report.tokens == sum(len(p.tokens) for p in pieces)

    again, report2 = D.scan_folder(folder, tok, cache_dir=cache)
    assert report2.from_cache == 3 and [list(p.tokens) for p in again] == [list(p.tokens) for p in pieces]
    assert report2.skipped == report.skipped

    changed = folder / pieces[0].path
    changed.write_bytes(corpus_files()[-1].read_bytes())  # a different piece under the same name
    third, report3 = D.scan_folder(folder, tok, cache_dir=cache)
    assert report3.from_cache == 2
    assert [u["cached"] for u in report3.used if u["path"] == pieces[0].path] == [False]
    assert list(third[0].tokens) == tok.encode(read_midi(changed)[0])


def test_parallel_scan_matches_serial(tok, tmp_path, monkeypatch):
    folder = make_folder(tmp_path, 3)
    serial, rep_s = D.scan_folder(folder, tok, cache_dir=tmp_path / "c1", workers=1)
    monkeypatch.setattr(D, "PARALLEL_MIN_FILES", 2)  # use worker processes even for five files
    parallel, rep_p = D.scan_folder(folder, tok, cache_dir=tmp_path / "c2", workers=2)
    assert [(p.path, list(p.tokens)) for p in parallel] == [(p.path, list(p.tokens)) for p in serial]
    assert rep_p.skipped == rep_s.skipped


def test_split_is_by_piece_and_stable(tok, pieces):
    train, val = D.split_pieces(pieces, 0.3, seed=0)
    assert train and val and {p.path for p in train}.isdisjoint(p.path for p in val)
    assert len(train) + len(val) == len(pieces)
    again_train, again_val = D.split_pieces(list(reversed(pieces)), 0.3, seed=0)
    assert {p.path for p in again_val} == {p.path for p in val}
    # adding a piece never moves the others
    extra = D.Piece("zz/new.mid", "0", pieces[0].tokens, pieces[0].notes)
    _, val_more = D.split_pieces(pieces + [extra], 0.3, seed=0)
    assert {p.path for p in val} <= {p.path for p in val_more}


def test_validation_takes_no_more_pieces_than_its_windows_use(tok, pieces):
    train, val = D.split_pieces(pieces, 0.99, seed=0)
    assert len(val) == len(pieces) - 1 >= 3
    # one window's worth: one piece validates, the others train; nothing is lost
    train1, val1 = D.cap_validation(train, val, tok, 64, 1, seed=0)
    assert len(val1) == 1 and len(train1) == len(pieces) - 1
    assert sorted(p.path for p in train1 + val1) == sorted(p.path for p in pieces)
    # the same piece whatever order the folder lists them in
    _, again = D.cap_validation(train, list(reversed(val)), tok, 64, 1, seed=0)
    assert [p.path for p in again] == [p.path for p in val1]
    # room for every window: the split is unchanged
    total = sum(len(D.piece_windows(p.tokens, tok, 64)) for p in val)
    train_all, val_all = D.cap_validation(train, val, tok, 64, total, seed=0)
    assert [p.path for p in val_all] == [p.path for p in val] and len(train_all) == len(train)


# --- augmentation --------------------------------------------------------------------------------
def test_augmentation_transposes_pitched_notes_only_and_scales_tempo(tok):
    from core.score import Note, Score, TempoChange, TimeSignature
    notes = [Note(i * 240, 240, 60 + i % 12, 90, 0) for i in range(24)]
    notes += [Note(i * 240, 120, 36 + (i % 2) * 6, 100, 0, drum=True) for i in range(24)]
    notes += [Note(i * 480, 480, 106, 80, 73) for i in range(8)]  # flute, 2 semitones below its top
    score = Score(notes, [TempoChange(0, 100.0), TempoChange(1920, 120.0)], [TimeSignature(0, 4, 4)])
    ids = tok.encode(score)
    original, _ = tok.decode(ids)
    seen = set()
    for seed in range(12):
        out = augment_tokens(ids, tok, random.Random(seed), max_transpose=5, tempo_jitter=0.1)
        tok.grammar(out)
        aug, _ = tok.decode(out)
        key = lambda n: (n.start, n.drum, n.program)  # noqa: E731
        shifts = {a.pitch - o.pitch for o, a in zip(sorted(original.notes, key=key), sorted(aug.notes, key=key))
                  if not o.drum}
        assert len(shifts) == 1
        shift = shifts.pop()
        seen.add(shift)
        assert -5 <= shift <= 5 and max(n.pitch for n in aug.notes if n.program == 73) <= 108
        assert sorted(n.pitch for n in aug.notes if n.drum) == sorted(n.pitch for n in original.notes if n.drum)
        ratio = [a.bpm / o.bpm for o, a in zip(original.tempos, aug.tempos)]
        assert all(0.89 <= r <= 1.11 for r in ratio) and len(ratio) == 2
    assert len(seen) > 3 and max(seen) <= 2 and min(seen) < 0  # the flute caps upward shifts at +2

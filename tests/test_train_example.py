"""One training example from one window (core.training.train_example.draw_example), on its own: no trainer, no model.
The same seed gives the same example; an infill example's layout and loss mask line up with its targets."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from core.training import data as D
from core.score import Note, Score, TempoChange, TimeSignature
from core.tokenizer import Tokenizer
from core.training.train_config import TrainConfig
from core.training.train_data import TrainingSet
from core.training.train_example import WindowSource, draw_example, example_seed
from tests.folders import make_folder

CTX = 128


@pytest.fixture(scope="module")
def folder_set(tmp_path_factory):
    """Real pieces cut into windows with every draw possible (crops, keys), the settings and the tokenizer."""
    root = tmp_path_factory.mktemp("examples")
    tok = Tokenizer()
    pieces, _ = D.scan_folder(make_folder(root, 4, broken=False), tok, cache_dir=str(root / "cache"), workers=1)
    config = TrainConfig(data="d", out="o", ctx_len=CTX, val_fraction=0.0, crop_share=0.5, key_augment=0.5,
                         augment=True, infill_share=0.5, seed=7)
    return TrainingSet.split(pieces, config, tok), config, tok


def _same(a: D.Example, b: D.Example) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_same_seed_gives_the_same_example_and_other_seeds_others(folder_set):
    data, config, tok = folder_set
    for w in range(len(data.train_windows)):
        seeds = [example_seed(config.seed, epoch, position) for epoch in (0, 1) for position in range(4)]
        examples = [draw_example(data.source(w), config, tok, s) for s in seeds]
        assert all(_same(e, draw_example(data.source(w), config, tok, s)) for e, s in zip(examples, seeds))
        assert all(len(e.inputs) % D.PAD_MULTIPLE == 0 and len(e.inputs) <= CTX for e in examples)
    assert len({e.inputs.tobytes() for e in examples}) > 1  # the draws differ between seeds


def test_with_no_draw_the_example_is_the_window_itself(folder_set):
    data, config, tok = folder_set
    plain = replace(config, crop_share=0.0, key_augment=0.0, augment=False, infill_share=0.0)
    source = data.source(0)
    expected = D.build_example(source.tokens, CTX, 0, tok.pad_id)
    assert _same(draw_example(source, plain, tok, "any seed"), expected)
    # completion only: the restated header is not scored, the rest is
    headed = next(data.source(i) for i in range(len(data.train_windows)) if data.source(i).head > 1)
    ex = draw_example(headed, replace(plain, completion_only=True), tok, "any seed")
    n = min(len(headed.tokens) - 1, CTX)
    assert not ex.mask[:headed.head - 1].any() and ex.mask[headed.head - 1:n].all() and not ex.mask[n:].any()


def test_an_infill_example_is_laid_out_as_the_infill_tokens_and_every_target_is_scored(folder_set):
    data, config, tok = folder_set
    infill = replace(config, crop_share=0.0, key_augment=0.0, augment=False, infill_share=1.0)
    made = 0
    for w in range(len(data.train_windows)):
        source, seed = data.source(w), example_seed(infill.seed, 0, w)
        ex = draw_example(source, infill, tok, seed)
        rng = random.Random(f"infill:{seed}")  # the infill draw's own generator: its share, then its layout
        assert rng.random() < 1.0
        seq = D.infill_tokens(source.tokens, tok, rng, CTX + 1, infill.part_share)
        if seq is None:  # no bar to take out: the window as it is
            assert _same(ex, D.build_example(source.tokens, CTX, 0, tok.pad_id))
            continue
        made += 1
        n = len(seq) - 1
        assert tok.fill_id in seq and seq[-1] == tok.eos_id
        assert ex.inputs[:n].tolist() == seq[:-1] and ex.targets[:n].tolist() == seq[1:]
        assert ex.targets[:n - 1].tolist() == ex.inputs[1:n].tolist()  # each target is the next input
        assert ex.mask[:n].all() and not ex.mask[n:].any()  # every token of an infill example is learnt
        assert (ex.inputs[n:] == tok.pad_id).all() and (ex.targets[n:] == tok.pad_id).all()
    assert made >= 2


def test_a_window_source_made_by_hand_needs_no_training_set():
    """The function reads only what it is given: a window of a piece with one Bar to crop from, no keys."""
    tok = Tokenizer()
    scale = [48 + (i * 5) % 29 for i in range(64)]  # no two bars alike
    piece = tok.encode(Score([Note(i * 240, 240, p, 90, 0) for i, p in enumerate(scale)], [TempoChange(0, 110.0)],
                             [TimeSignature(0, 4, 4)]))
    bars = tok.bar_headers(piece)
    n = len(piece) // 2
    source = WindowSource(tokens=list(piece[:n]), head=0, piece_tokens=piece, piece_bars=bars, piece_key=None,
                          folder_keys=None)
    config = TrainConfig(data="d", out="o", ctx_len=CTX, crop_share=1.0)
    examples = [draw_example(source, config, tok, example_seed(0, 0, p)) for p in range(20)]
    assert all(int(e.mask.sum()) == n - 1 for e in examples)  # a crop keeps the window's length
    assert len({e.inputs.tobytes() for e in examples}) > 1  # and starts at different Bars

"""Augmentations of a style's training windows: moved into keys the folder's own pieces use (core.training.keys), and
cropped from a random bar of their piece."""
from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from core.training import augment as A
from core.training import data as D
from core.training.keys import MAJOR_PROFILE, key_of_histogram, key_shift
from core.score import Note, Score, TempoChange, TimeSignature
from core.tokenizer import Tokenizer

C_MAJOR_TUNE = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 67, 65, 62, 60]


def test_key_of_a_rotated_profile_is_its_rotation():
    for tonic in range(12):
        assert key_of_histogram(np.roll(MAJOR_PROFILE, tonic))[:2] == (tonic, "major")
    assert key_of_histogram(np.zeros(12)) is None and key_of_histogram(np.ones(12)) is None


@pytest.mark.parametrize("source, target, shift", [
    ((7, "major"), (2, "major"), -5),   # G to D: down a fourth, not up a fifth
    ((2, "major"), (7, "major"), 5),
    ((0, "major"), (9, "minor"), 0),    # A minor's relative major is C
    ((9, "minor"), (7, "major"), -5),   # G major's relative minor is E: A down to E
    ((4, "minor"), (4, "minor"), 0),
    ((0, "major"), (6, "major"), -6),
])
def test_key_shift_keeps_the_mode_and_takes_the_nearer_direction(source, target, shift):
    assert key_shift((*source, 1.0), (*target, 1.0)) == shift


def tune(pitches, program=40, drums=False) -> Score:
    notes = [Note(i * 240, 240, p, 90, program) for i, p in enumerate(pitches)]
    if drums:
        notes += [Note(i * 480, 120, 36, 100, 0, drum=True) for i in range(len(pitches) // 2)]
    return Score(notes, [TempoChange(0, 110.0)], [TimeSignature(0, 4, 4)])


def test_a_key_shift_moves_pitched_notes_by_its_octave_that_fits():
    tok = Tokenizer()
    ids = tok.encode(tune(C_MAJOR_TUNE, drums=True))
    for want in range(-6, 6):
        out = A.augment_tokens(ids, tok, random.Random(0), tempo_jitter=0.0, key_shift=want)
        tok.grammar(out)
        key = key_of_histogram(A.pitch_class_counts(out, tok))
        assert key[:2] == (want % 12, "major")
        shifted, _ = tok.decode(out)
        assert sorted(n.pitch for n in shifted.notes if not n.drum) == sorted(p + want for p in C_MAJOR_TUNE)
        assert [n.pitch for n in shifted.notes if n.drum] == [36] * (len(C_MAJOR_TUNE) // 2)
    # a violin (program 40) tune at the top of its range goes down an octave rather than out of it
    high = tok.encode(tune([p + 36 for p in C_MAJOR_TUNE]))
    out, _ = tok.decode(A.augment_tokens(high, tok, random.Random(0), tempo_jitter=0.0, key_shift=5))
    assert sorted(n.pitch for n in out.notes) == sorted(p + 36 - 7 for p in C_MAJOR_TUNE)


def training_set(style_base, tmp_path, **settings):
    """The conftest folder cut into windows as a style run on it cuts them (no model, no trainer): the set,
    the run's settings and its tokenizer."""
    from core.training.train_config import TrainConfig
    from core.training.train_data import TrainingSet
    from core.training.train_model import base_tokenizer
    folder, base = style_base
    cfg = TrainConfig(data=str(folder), out=str(tmp_path / "run"), base=base, mode="style", batch_size=2, steps=2,
                      workers=1, val_fraction=0.0, **settings)
    tok = base_tokenizer(base)
    pieces, _ = D.scan_folder(cfg.data, tok, cache_dir=str(tmp_path / "cache"), workers=1)
    return TrainingSet.split(pieces, cfg, tok), cfg, tok


def test_training_windows_move_into_the_keys_of_the_folder(style_base, tmp_path):
    """With every window augmented, the keys training sees are those of the folder's pieces, each tune in
    several of them, and the same seed gives the same examples."""
    from core.training.train_example import draw_example, example_seed
    data, cfg, tok = training_set(style_base, tmp_path, ctx_len=32, key_augment=1.0, crop_share=0.0)
    folder_keys = {k[:2] for k in data.piece_keys if k is not None}
    assert len(folder_keys) >= 2
    moved = collections.defaultdict(set)
    for position in range(40):
        w = position % len(data.train_windows)
        seed = example_seed(cfg.seed, 0, position)
        ex = draw_example(data.source(w), cfg, tok, seed)
        assert np.array_equal(ex.inputs, draw_example(data.source(w), cfg, tok, seed).inputs)
        original, _ = D.window_tokens(data.train_pieces, data.train_windows[w])
        shift = {int(a) - int(b) for a, b in zip(ex.inputs, original[:-1]) if a != b}  # inputs: all but the last
        assert len(shift) <= 1  # only pitches change, all by one interval
        piece_key = data.piece_keys[data.train_windows[w].piece]
        tonic = (piece_key[0] + (shift.pop() if shift else 0)) % 12
        moved[data.train_windows[w].piece].add(tonic)
    assert any(len(tonics) > 1 for tonics in moved.values())


def test_a_share_outside_0_to_1_is_refused(tmp_path):
    from core.training.train import _Trainer
    from core.training.train_config import MODE_DEFAULTS, TrainConfig, TrainingError
    with pytest.raises(TrainingError, match="key augment is a fraction from 0 to 1"):
        _Trainer(TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), key_augment=1.5), lambda e: None,
                 lambda: False)
    assert TrainConfig("d", "o", mode="style").resolved("key_augment") == MODE_DEFAULTS["key_augment"]["style"] > 0
    assert TrainConfig("d", "o", mode="full").resolved("key_augment") == 0.0
    assert TrainConfig("d", "o", mode="full").resolved("average_from") is None


def test_cropped_windows_start_at_a_bar_with_its_header_and_keep_their_length(style_base, tmp_path):
    data, _, tok = training_set(style_base, tmp_path, ctx_len=64, key_augment=0.0, crop_share=1.0)
    starts = collections.defaultdict(set)
    for position in range(60):
        w = data.train_windows[position % len(data.train_windows)]
        tokens, head = D.window_tokens(data.train_pieces, w)
        cropped, cropped_head = A.cropped(data.train_pieces[w.piece].tokens, data.piece_bars[w.piece],
                                          w.n_tokens, random.Random(position))
        assert len(cropped) == len(tokens)
        ids = [int(t) for t in data.train_pieces[w.piece].tokens]
        headers = dict(tok.bar_headers(ids))
        # header + the piece from the bar after it, wherever the crop starts
        matches = [i for i, h in headers.items() if i > 0 and cropped[:cropped_head] == h
                   and cropped[cropped_head:] == ids[i + 1:i + 1 + len(cropped) - cropped_head]]
        assert matches, "a crop is a restated header followed by the piece from that bar on"
        tok.grammar(cropped[:-1])  # the grammar accepts it
        starts[w].update(matches)
    assert any(len(s) > 1 for s in starts.values())  # the same window starts at different bars

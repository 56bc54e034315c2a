"""bench/ evaluation pieces: the n-gram baseline, the scoring windows, the continuation metrics, the
Transformer baseline, and (slow) the whole eval_base command on a tiny real model and the test corpus."""
from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import music_metrics as MM
from bench.ngram import KneserNeyNGram
from bench.scoring import PieceSet, ngram_window_bits, scoring_windows, torch_window_bits
from bench.transformer import CausalTransformer, Schedule, TransformerConfig, matched_config, parameter_count, \
    train_causal_lm
from core.midi import read_midi
from core.model import ModelConfig, RWKV7
from core.score import TICKS_PER_BEAT, Note
from core.tokenizer import Tokenizer
from core.train import sequence_nll_bits

CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small models gain nothing from threads, and spinning threads crawl on a busy shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer()


PIECES = ["bach/bwv1.6.mid", "essenFolksong/altdeu10-1.mid", "palestrina/Agnus.mid"]


@pytest.fixture(scope="module")
def scores():
    """Three real pieces of the test corpus: a chorale, a folk tune, a mass movement."""
    return [read_midi(str(CORPUS / f))[0] for f in PIECES]


@pytest.fixture(scope="module")
def piece_ids(tok, scores):
    return [tok.encode(s) for s in scores]


# --- n-gram ------------------------------------------------------------------------------------------
def _reference_kn(seqs, order, vocab, pad=0):
    """A direct, dictionary-based interpolated modified Kneser-Ney, written from the formulas."""
    counts = {order: Counter()}
    for s in seqs:
        p = [pad] * (order - 1) + list(s)
        for j in range(order, len(p)):
            counts[order][tuple(p[j - order + 1:j + 1])] += 1
    for k in range(order - 1, 0, -1):
        counts[k] = Counter(g[1:] for g in counts[k + 1])

    def discounts(c):
        n = [sum(1 for v in c.values() if v == i) for i in (1, 2, 3, 4)]
        if min(n) == 0:
            return 0.5, 1.0, 1.5
        y = n[0] / (n[0] + 2 * n[1])
        return tuple(min(max(d, 0.0), i + 1.0) for i, d in
                     enumerate((1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])))

    ds = {k: discounts(c) for k, c in counts.items()}

    def prob(context, w):
        context = [pad] * (order - 1 - len(context)) + list(context)
        p = 1.0 / vocab
        for k in range(1, order + 1):
            h = tuple(context[len(context) - (k - 1):]) if k > 1 else ()
            followers = {g[-1]: c for g, c in counts[k].items() if g[:-1] == h}
            if not followers:
                continue
            d1, d2, d3 = ds[k]
            total = sum(followers.values())
            gamma = sum(d1 if c == 1 else d2 if c == 2 else d3 for c in followers.values())
            c = followers.get(w, 0)
            d = 0.0 if c == 0 else d1 if c == 1 else d2 if c == 2 else d3
            p = (max(c - d, 0.0) + gamma * p) / total
        return p

    return prob


def test_ngram_matches_a_direct_implementation_of_the_formulas():
    rng = np.random.default_rng(3)
    seqs = [[1] + list(rng.choice([3, 4, 5, 6, 7, 8], size=rng.integers(4, 30), p=[.4, .2, .15, .1, .1, .05]))
            for _ in range(60)]
    model = KneserNeyNGram(3, 10).fit(seqs)
    ref = _reference_kn(seqs, 3, 10)
    for context in ([1], [1, 3], [3, 4], [4, 4], [9, 9], [8, 3], []):
        for w in range(10):
            assert model.distribution(context)[w] == pytest.approx(ref(context, w), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_ngram_gives_every_token_a_proper_probability(order, piece_ids, tok):
    model = KneserNeyNGram(order, tok.vocab_size, tok.pad_id).fit(piece_ids[:2])
    for context in (piece_ids[2][:5], piece_ids[0][:40], [tok.bos_id], [17, 17, 17]):  # seen and unseen
        d = model.distribution(context)
        assert d.shape == (tok.vocab_size,)
        assert d.min() > 0
        assert d.sum() == pytest.approx(1.0, abs=1e-9)
    bits = model.token_bits(piece_ids[2])  # a piece it never saw: finite bits for every token
    assert len(bits) == len(piece_ids[2]) - 1 and np.all(np.isfinite(bits))


def test_ngram_learns_and_higher_orders_use_longer_contexts():
    # a deterministic cycle of period 4 over 3 symbols: a bigram cannot tell what follows "5", a 3-gram can
    seqs = [[1] + [5, 6, 5, 7] * 20 for _ in range(5)]
    test = [1] + [5, 6, 5, 7] * 10
    bits = {n: KneserNeyNGram(n, 10).fit(seqs).token_bits(test).mean() for n in (1, 2, 3)}
    assert bits[1] < math.log2(10)
    assert bits[3] < bits[2] - 0.5 < bits[1]
    assert bits[3] < 0.2


# --- scoring windows -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ctx", [16, 48, 200, 100000])
def test_windows_score_every_token_once_in_grammatical_context(ctx, piece_ids, tok):
    for ids in piece_ids:
        windows = scoring_windows(ids, tok, ctx)
        scored = [t for w in windows for t in w.tokens[w.score_from:]]
        assert scored == ids[1:]  # each token once, in order
        assert windows[0].tokens == ids[:len(windows[0].tokens)] and windows[0].score_from == 1
        for w in windows:
            assert len(w.tokens) <= ctx + 1 and w.tokens[0] == tok.bos_id and 1 <= w.score_from < len(w.tokens)
            if not w.cut:
                tok.grammar(w.tokens)  # raises on an ungrammatical window
        for w in windows[1:]:  # later windows are full (or reach the end) and give their tokens context
            assert len(w.tokens) == ctx + 1 or w.tokens[-1] == ids[-1]
            if not w.cut and ctx >= 200:  # bars are much shorter than that here
                assert w.score_from > ctx // 4
        if ctx >= 200:
            assert not any(w.cut for w in windows)
        if ctx >= len(ids):
            assert len(windows) == 1


def test_batched_window_scoring_equals_one_window_at_a_time(piece_ids, scores, tok):
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("att.output.weight", "ffn.value.weight")):
                p.normal_(0.0, 0.05)  # the init zeroes them: the model would ignore its context
    pieces = PieceSet.build(["a", "b"], [piece_ids[0][:400], piece_ids[1]], tok, 64)
    batched = torch_window_bits(model, pieces.windows, tok.pad_id, batch_size=5)
    with torch.no_grad():
        for w, bits in zip(pieces.windows, batched):
            logits = model(torch.tensor([w.tokens[:-1]]))[0]
            nll = torch.nn.functional.cross_entropy(logits, torch.tensor(w.tokens[1:]), reduction="none")
            assert bits == pytest.approx(float(nll[w.score_from - 1:].sum()) / math.log(2), rel=1e-4)
    # one window holds a whole short piece: the same total as scoring it through the recurrent state
    short = PieceSet.build(["c"], [piece_ids[1]], tok, len(piece_ids[1]))
    assert len(short.windows) == 1
    total = torch_window_bits(model, short.windows, tok.pad_id).sum()
    assert total == pytest.approx(sequence_nll_bits(model, piece_ids[1]), rel=1e-4)
    summary = short.summary(np.array([total]))
    assert summary["notes"] == len(scores[1].notes)  # one Pitch token per note
    assert summary["bits_per_note"] == pytest.approx(total / summary["notes"])


def test_ngram_window_bits_add_up_to_the_scored_tokens(piece_ids, tok):
    model = KneserNeyNGram(3, tok.vocab_size, tok.pad_id).fit(piece_ids[:2])
    one = PieceSet.build(["x"], [piece_ids[2]], tok, 100000)
    assert ngram_window_bits(model, one.windows)[0] == pytest.approx(model.token_bits(piece_ids[2]).sum())


# --- continuation metrics ----------------------------------------------------------------------------
def _notes(pitches, step=TICKS_PER_BEAT, duration=None, start=0):
    return [Note(start + i * step, duration or step, p) for i, p in enumerate(pitches)]


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 67, 60]
A_MINOR = [57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57, 64, 57, 68, 69]


def test_histogram_overlap_bounds():
    a = MM.pitch_class_histogram(_notes(C_MAJOR))
    assert MM.histogram_overlap(a, a) == pytest.approx(1.0)
    assert MM.histogram_overlap(MM.pitch_class_histogram(_notes([60, 64])),
                                MM.pitch_class_histogram(_notes([61, 63]))) == 0.0
    assert MM.histogram_overlap(MM.pitch_class_histogram(_notes([60, 62])),
                                MM.pitch_class_histogram(_notes([60, 63]))) == pytest.approx(0.5)
    assert MM.histogram_overlap(a, np.zeros(12)) == 0.0
    drums = [Note(0, 100, 36, drum=True)]
    assert MM.pitch_class_histogram(drums).sum() == 0  # drums carry no pitch class


def test_krumhansl_schmuckler_finds_the_key_in_every_transposition():
    for shift in range(12):
        major = MM.estimate_key(_notes([p + shift for p in C_MAJOR]))
        minor = MM.estimate_key(_notes([p + shift for p in A_MINOR]))
        assert major[:2] == (shift % 12, "major")
        assert minor[:2] == ((9 + shift) % 12, "minor")
    assert MM.estimate_key([]) is None
    assert MM.key_name(MM.estimate_key(_notes(C_MAJOR))) == "C major"


def test_in_key_share():
    key = MM.estimate_key(_notes(C_MAJOR))
    assert MM.in_key_share(_notes(C_MAJOR), key) == 1.0
    assert MM.in_key_share(_notes([61, 63, 66, 60]), key) == 0.25
    assert math.isnan(MM.in_key_share([], key))
    a_minor = MM.estimate_key(_notes(A_MINOR))
    assert MM.in_key_share(_notes([68]), a_minor) == 1.0  # the raised 7th belongs to minor


def test_inter_onset_histogram_and_density():
    quarters = _notes([60] * 8)
    h = MM.ioi_histogram(quarters, TICKS_PER_BEAT)
    assert h[0 - MM.IOI_BIN_MIN] == 1.0  # every gap is one beat
    chords = quarters + _notes([64] * 8)  # simultaneous notes are one onset
    assert MM.histogram_overlap(MM.ioi_histogram(chords, TICKS_PER_BEAT), h) == pytest.approx(1.0)
    eighths = _notes([60] * 8, step=TICKS_PER_BEAT // 2)
    assert MM.histogram_overlap(MM.ioi_histogram(eighths, TICKS_PER_BEAT), h) == 0.0
    m = MM.compare_continuation(_notes(C_MAJOR), eighths, quarters, bars=2, ticks_per_beat=TICKS_PER_BEAT)
    assert m["density_ratio"] == 1.0 and m["notes_per_bar"] == 4.0 and m["ioi_overlap"] == 0.0
    assert m["pitch_class_overlap"] == 1.0 and m["in_key"] == 1.0
    assert MM.density_ratio(_notes([60] * 3), _notes([60] * 6)) == 0.5
    mean = MM.mean_metrics([m, {**m, "density_ratio": 3.0, "in_key": float("nan")}])
    assert mean["density_ratio"] == 2.0 and mean["in_key"] == 1.0 and "key" not in mean


# --- Transformer baseline ----------------------------------------------------------------------------
def test_transformer_is_causal_and_matched_in_size(tok):
    torch.manual_seed(0)
    cfg = TransformerConfig(tok.vocab_size, n_layer=2, n_embd=64, ctx_len=32)
    model = CausalTransformer(cfg).eval()
    idx = torch.randint(0, tok.vocab_size, (2, 32))
    changed = idx.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % tok.vocab_size
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-5) and not torch.allclose(a[:, 20:], b[:, 20:])
    rwkv = RWKV7(ModelConfig(n_layer=2, n_embd=64, vocab_size=tok.vocab_size))
    matched = matched_config(parameter_count(rwkv), tok.vocab_size, 64, 32)
    assert parameter_count(CausalTransformer(matched)) == pytest.approx(parameter_count(rwkv), rel=0.1)


def test_transformer_training_lowers_the_loss(piece_ids, tok):
    from core.data import Piece
    torch.manual_seed(0)
    pieces = [Piece(f"p{i}", str(i), np.asarray(ids, dtype=np.int32), 0) for i, ids in enumerate(piece_ids)]
    model = CausalTransformer(TransformerConfig(tok.vocab_size, n_layer=1, n_embd=64, ctx_len=32))
    losses = []
    stats = train_causal_lm(model, pieces, tok, Schedule(steps=16, batch_size=4, ctx_len=32, lr=5e-3),
                            log=lambda step, loss: losses.append(loss))
    assert stats["steps"] == 16 and stats["tokens"] > 16 * 4 * 16
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 1.0


# --- the whole command (slow) ----------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_base_runs_every_section_on_a_tiny_model(tmp_path):
    """A tiny RWKV-7 trained 20 steps on the training split of the test corpus, then every section."""
    from bench import eval_base
    from core.train import TrainConfig, run_training

    manifest = json.loads((CORPUS / "manifest.json").read_text())
    corpus = tmp_path / "corpus"
    seen: Counter = Counter()
    for e in manifest["pieces"]:  # give every collection a test and a validation piece
        seen[e["collection"]] += 1
        e["split"] = {1: "test", 2: "validation"}.get(seen[e["collection"]], "train")
        (corpus / e["file"]).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(CORPUS / e["file"], corpus / e["file"])
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    train = tmp_path / "train"
    for e in manifest["pieces"]:
        if e["split"] == "train" and e["collection"] != "oneills1850":
            (train / e["file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CORPUS / e["file"], train / e["file"])
    paths = run_training(TrainConfig(data=str(train), out=str(tmp_path / "model"), n_layer=1, n_embd=64,
                                     ctx_len=64, batch_size=4, steps=20, lr=4e-3, val_fraction=0.0, threads=1,
                                     workers=1, cache_dir=str(tmp_path / "cache")))
    out = tmp_path / "eval.json"
    code = eval_base.main(["--model", paths["result"], "--corpus", str(corpus), "--work", str(tmp_path / "work"),
                           "--cache", str(tmp_path / "cache"), "--sections", "1", "2", "3", "4", "--threads", "1",
                           "--workers", "1", "--json", str(out), "--ngram-orders", "3", "--prompts", "3",
                           "--de-layers", "1", "--de-width", "64", "--de-steps", "5", "--de-ctx", "64",
                           "--de-batch", "4", "--ft-steps", "5", "--ft-batch", "4", "--ft-modes", "state", "full"])
    assert code == 0
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["bits_per_note"]["rows"]}
    assert len(rows) == 4  # RWKV windows, RWKV whole pieces, 3-gram, Transformer
    assert all(r["bits_per_note"] > 0 for r in rows.values())
    assert result["bits_per_note"]["schedule"]["steps"] == 20
    assert result["bits_per_note"]["test_pieces_in_training_folder"] == 0
    assert result["bits_per_note"]["transformer_budget"] == "same steps as the RWKV run"
    assert len(result["deepembed"]["rows"]) == 2
    assert result["continuations"]["valid"] and result["continuations"]["checks"]["decoded"] == 3
    ft = {r["mode"]: r for r in result["finetune"]["rows"]}
    assert set(ft) == {"base model", "state", "full"} and ft["full"]["steps"] == 5
    assert ft["full"]["bits_per_note"] < ft["base model"]["bits_per_note"]  # it trained on that collection


def test_style_position_profile_counts_every_token_once_and_sees_the_style(piece_ids):
    from bench.eval_base import position_profile
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=2, n_embd=64, vocab_size=Tokenizer().vocab_size)).eval()
    with torch.no_grad():  # from-scratch output weights are zero: the state would change nothing
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    cfg = model.config
    pieces = [list(p) for p in piece_ids[:3]]
    zero = torch.zeros(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size)
    rows = position_profile(model, zero, pieces)
    assert sum(r["tokens"] for r in rows) == sum(len(p) - 1 for p in pieces)
    assert all(abs(r["base"] - r["style"]) < 1e-9 and abs(r["reduction"]) < 1e-9 for r in rows)
    noisy = torch.randn_like(zero) * 3.0
    changed = position_profile(model, noisy, pieces)
    assert abs(changed[0]["style"] - changed[0]["base"]) > 1e-3  # a state that differs moves the first tokens

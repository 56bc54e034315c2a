"""core.evaluate: the n-gram baseline, the scoring windows, infill bits, the continuation metrics, the
Transformer baseline; and (slow) the whole bench/eval_base.py command on a tiny real model and the test corpus."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.training.data import Piece
from core.evaluate import music as MM
from core.evaluate.bits import bits_per_note, nats_to_bits
from core.evaluate.ngram import KneserNeyNGram
from core.evaluate.scoring import (PieceSet, infill_bits, ngram_window_bits, position_profile, scoring_windows,
                                   torch_window_bits, uniform_window_bits)
from core.evaluate.transformer import (CausalTransformer, Schedule, TransformerConfig, load_transformer,
                                       matched_config, parameter_count, save_transformer, train_causal_lm)
from core.midi import read_midi
from core.network.model import ModelConfig, RWKV7
from core.score import TICKS_PER_BEAT, Note
from core.tokenizer import Tokenizer
from core.evaluate.files import sequence_nll_bits

ROOT = Path(__file__).resolve().parents[1]
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


def test_uniform_guess_costs_log2_of_the_vocabulary_per_token(piece_ids, tok):
    pieces = PieceSet.build(["a", "b"], piece_ids[:2], tok, 64)
    summary = pieces.summary(uniform_window_bits(pieces.windows, tok.vocab_size))
    assert summary["bits_per_token"] == pytest.approx(math.log2(tok.vocab_size))
    assert summary["bits_per_note"] == pytest.approx(math.log2(tok.vocab_size) * pieces.scored_tokens
                                                     / pieces.total_notes)


def _rwkv(tok, uses_context: bool) -> RWKV7:
    """A small RWKV-7; from its init (output projections zero) its logits depend on the current token only."""
    torch.manual_seed(0)
    model = RWKV7(ModelConfig(n_layer=1, n_embd=64, vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if uses_context and name.endswith(("att.output.weight", "ffn.value.weight")):
                p.normal_(0.0, 0.05)
            elif name.endswith("head.weight"):
                p.normal_(0.0, 0.5)  # distinct predictions per token, so a wrong span would show
    return model


def test_bits_per_note_has_one_torch_free_home():
    """Every report's bits per note comes from core.evaluate.bits, which the training job and the bench tools
    share without loading torch for it."""
    assert nats_to_bits(6 * math.log(2)) == pytest.approx(6.0)
    assert bits_per_note(6.0, 3) == 2.0 and bits_per_note(6.0, 0) == 6.0  # no note: the bits, not a crash
    code = "import sys, core.evaluate.bits; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_infill_bits_score_the_same_middle_with_and_without_the_bars_after(piece_ids, tok):
    pieces = [Piece(f"p{i}", str(i), np.asarray(ids, dtype=np.int32), 0) for i, ids in enumerate(piece_ids)]
    blind = infill_bits(_rwkv(tok, False), pieces, tok, 128, examples=12)
    assert blind["examples"] >= 6 and blind["middle_notes"] > 0
    # a model that sees only the current token gives the middle the same bits whatever comes before it
    assert blind["before_and_after"] == pytest.approx(blind["before_only"], rel=1e-6)
    assert blind["before_and_after"] > 0
    seeing = infill_bits(_rwkv(tok, True), pieces, tok, 128, examples=12)
    assert seeing["middle_notes"] == blind["middle_notes"]  # the same examples, seeded
    assert abs(seeing["before_and_after"] - seeing["before_only"]) > 1e-3


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


def test_velocity_histogram_overlap():
    def at(velocities):
        return [Note(i * TICKS_PER_BEAT, TICKS_PER_BEAT, 60, v) for i, v in enumerate(velocities)]
    loud, soft = at([100, 104, 110]), at([30, 35])
    assert MM.histogram_overlap(MM.velocity_histogram(loud), MM.velocity_histogram(loud)) == pytest.approx(1.0)
    assert MM.histogram_overlap(MM.velocity_histogram(loud), MM.velocity_histogram(soft)) == 0.0
    assert MM.histogram_overlap(MM.velocity_histogram(at([100, 30])), MM.velocity_histogram(at([100]))) \
        == pytest.approx(0.5)
    assert MM.velocity_histogram(at([1, 127])).sum() == pytest.approx(1.0)  # both ends have a bin
    m = MM.compare_continuation(loud, soft, loud, bars=1, ticks_per_beat=TICKS_PER_BEAT)
    assert m["velocity_overlap"] == 0.0 and m["pitch_class_overlap"] == 1.0


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
    from core.training.data import Piece
    torch.manual_seed(0)
    pieces = [Piece(f"p{i}", str(i), np.asarray(ids, dtype=np.int32), 0) for i, ids in enumerate(piece_ids)]
    model = CausalTransformer(TransformerConfig(tok.vocab_size, n_layer=1, n_embd=64, ctx_len=32))
    losses = []
    stats = train_causal_lm(model, pieces, tok, Schedule(steps=16, batch_size=4, ctx_len=32, lr=5e-3),
                            log=lambda step, loss: losses.append(loss))
    assert stats["steps"] == 16 and stats["tokens"] > 16 * 4 * 16
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 1.0


def test_a_transformer_trains_for_a_time_budget_as_the_rwkv_loop_does(piece_ids, tok):
    """sweep_base --tf-by-time: the steps are set from the first steps' speed (the RWKV loop's BudgetFit), and
    the cosine is fitted to them: the last step runs at the schedule's floor, not cut off mid-decay."""
    from core.training.data import Piece
    torch.manual_seed(0)
    pieces = [Piece(f"p{i}", str(i), np.asarray(ids, dtype=np.int32), 0) for i, ids in enumerate(piece_ids)]
    model = CausalTransformer(TransformerConfig(tok.vocab_size, n_layer=1, n_embd=32, ctx_len=32))
    rates = []
    original_step = torch.optim.AdamW.step

    def step(self, *a, **k):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *a, **k)
    schedule = Schedule(steps=10**6, batch_size=2, ctx_len=32, lr=1e-3, time_budget_s=2.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", step)
        stats = train_causal_lm(model, pieces, tok, schedule)
    assert 30 <= stats["steps"] == len(rates) < 10**6
    cut = stats["seconds"] > 1.05 * 2.0  # a machine that got busier ends the run there, mid-decay
    assert cut or rates[-1] == pytest.approx(schedule.lr * schedule.min_lr_ratio, rel=0.05)


def test_a_saved_transformer_loads_with_the_same_outputs(tmp_path, tok):
    torch.manual_seed(0)
    model = CausalTransformer(TransformerConfig(tok.vocab_size, n_layer=1, n_embd=64, ctx_len=32)).eval()
    save_transformer(model, tmp_path / "tf.pt", lr=3e-3, steps=7)
    back, info = load_transformer(tmp_path / "tf.pt")
    idx = torch.randint(0, tok.vocab_size, (2, 20))
    with torch.no_grad():
        assert torch.equal(model(idx), back(idx))
    assert info == {"lr": 3e-3, "steps": 7} and back.config == model.config
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved Transformer"):
        load_transformer(tmp_path / "other.pt")


# --- the whole command (slow) ----------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_base_runs_every_section_on_a_tiny_model(tmp_path, tok):
    """The bench/eval_base.py command on the test corpus: a tiny RWKV-7 trained 20 steps on its training split,
    today's bundled model, a sweep's results with one kept Transformer, and every section."""
    from tests.gui.models import make_tiny_checkpoint
    from core.training.train import run_training
    from core.training.train_config import TrainConfig

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
    # a sweep's results: two rates of one Transformer size, the better one kept on disk as the sweep keeps it
    sweep = tmp_path / "sweep"
    torch.manual_seed(0)
    tf = CausalTransformer(TransformerConfig(tok.vocab_size, n_layer=1, n_embd=64, ctx_len=64))
    (sweep / "tf1x64_1e-3").mkdir(parents=True)
    save_transformer(tf, sweep / "tf1x64_1e-3" / "transformer.pt", lr=1e-3, steps=5, tokenizer=tok.to_dict())
    val = {"bach": 9.0, "palestrina": 8.0}
    (sweep / "sweep.json").write_text(json.dumps({
        "1x64": {"params": 1, "steps": 5, "kind": "rwkv", "val": val},
        "tf1x64:1e-3": {"params": parameter_count(tf), "steps": 5, "lr": 1e-3, "kind": "tf", "val": val},
        "tf1x64:3e-3": {"params": parameter_count(tf), "steps": 5, "lr": 3e-3, "kind": "tf",
                        "val": {c: v + 1 for c, v in val.items()}}}))
    out = tmp_path / "eval.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "eval_base.py"), "--model", paths["result"], "--corpus", str(corpus),
         "--old-model", str(make_tiny_checkpoint(tmp_path / "v1.pth", tokenizer_version="rwkvmusic-tok-1")),
         "--sweep", str(sweep / "sweep.json"), "--work", str(tmp_path / "work"), "--cache", str(tmp_path / "cache"),
         "--sections", "1", "2", "3", "4", "5", "6", "--threads", "1", "--workers", "1", "--json", str(out),
         "--prompts", "2", "--prompt-bars", "2", "--gen-bars", "2", "--cont-collections", "bach", "essenFolksong",
         "--infill-examples", "4", "--infills", "1", "--infill-bars", "1", "--live-steps", "20", "--repeats", "1",
         "--live-pieces", "0", "--de-layers", "1", "--de-width", "64", "--de-steps", "5", "--de-ctx", "64",
         "--de-batch", "4", "--ft-steps", "5", "--ft-batch", "4", "--ft-modes", "state", "full"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    bits = result["bits_per_note"]
    kinds = ("this model", "today's", "5-gram", "Transformer ~1x64, lr 0.001 (best of 2)",
             f"uniform guess over {tok.vocab_size} tokens")
    rows = {k: r for r in bits["rows"] for k in kinds if k in r["model"]}
    assert len(rows) == len(bits["rows"]) == len(kinds), [r["model"] for r in bits["rows"]]
    assert "oneills1850" in bits["collections"]  # the held-out collection is scored too
    for r in rows.values():
        assert all(r[c] > 0 for c in bits["collections"]) and r["all"] > 0
    assert rows["today's"]["model"].endswith("(tokenizer v1)") and rows["this model"]["ctx"] == 64
    assert [s["best"] for s in bits["transformer_search"]] == [True, False]
    assert bits["test_pieces_in_training_folder"] == 0
    assert len(result["deepembed"]["rows"]) == 2
    cont = result["continuations"]
    assert cont["valid"] and cont["checks"]["decoded"] == 2 and set(cont["collections"]) == {"bach", "essenFolksong"}
    assert "velocity_overlap" in cont["collections"]["bach"]["mean"]
    infill = result["infill"]
    assert {r["collection"] for r in infill["bits"]} >= {"bach", "oneills1850*"}
    assert all(r["middle_notes"] > 0 for r in infill["bits"] if r["examples"])
    assert infill["valid"] and infill["checks"]["generated"] == 2 and infill["checks"]["outside_changed"] == 0
    live = result["live"]
    assert live["step_ms"] > 0 and live["real_time_factor"] > 0 and live["first_note_prompt_tokens"] > 500
    ft = {r["mode"]: r for r in result["finetune"]["rows"]}
    assert set(ft) == {"base model", "state", "full"} and ft["full"]["steps"] == 5
    assert ft["full"]["bits_per_note"] < ft["base model"]["bits_per_note"]  # it trained on that collection
    assert "1. Test bits per note" in done.stdout and "6. Live figures" in done.stdout


def test_style_position_profile_counts_every_token_once_and_sees_the_style(piece_ids):
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

"""The piece and folder memories (core.memory): their counts against brute force, forks, the mixture; the
bundled model with the piece memory on real music; style files that carry a folder's memory; the copy meter."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.copying import copy_share, folder_phrases, phrase_keys
from core.memory import MIN_ORDER, ORDERS, FolderMemory, MemoryMixer, PieceMemory
from core.score import Note, Score, TimeSignature

DATA = Path(__file__).parent / "data"


def brute_force_counts(seq: list[int], k: int) -> Counter:
    """What followed the last k tokens of seq, everywhere earlier in seq."""
    ctx = tuple(seq[-k:])
    return Counter(seq[i + k] for i in range(len(seq) - k) if tuple(seq[i:i + k]) == ctx)


def test_piece_memory_recalls_what_followed_each_context():
    rng = np.random.default_rng(0)
    seq = list(rng.integers(0, 5, 400))
    memory = PieceMemory(seq)
    r = memory.recall()
    # the top order is the longest context seen before, and its counts are the brute-force ones
    longest = max(k for k in ORDERS if brute_force_counts(seq, k))
    assert r.order == longest
    top = brute_force_counts(seq, longest)
    assert r.seen == sum(top.values()) and r.distinct == len(top)
    # PPM masses: every token seen after a context gets mass, and the escape keeps the rest
    assert abs(r.mass.sum() + r.escape - 1.0) < 1e-12
    assert 0 < r.escape < 1
    seen_after = set()
    for k in (k for k in ORDERS if k <= longest):
        seen_after |= set(brute_force_counts(seq, k))
    assert set(r.tokens.tolist()) == seen_after


def test_a_fork_sees_its_parent_and_leaves_it_unchanged():
    base = PieceMemory([1, 2, 3, 1, 2, 3, 1, 2])
    before = base.recall()
    child = base.fork()
    child.extend([7, 1, 2])
    after = base.recall()
    assert before.tokens.tolist() == after.tokens.tolist() and np.allclose(before.mass, after.mass)
    r = child.recall()  # "1 2" was followed by 3 twice in the parent and by 7 once... now by 3, 3, 7
    assert dict(zip(r.tokens.tolist(), r.mass > 0)) == {3: True, 7: True}
    fresh = PieceMemory([1, 2, 3, 1, 2, 3, 1, 2, 7, 1, 2])
    assert np.allclose(sorted(fresh.recall().mass), sorted(r.mass)) and fresh.recall().order == r.order


def test_folder_memory_agrees_with_the_online_memory():
    """The vectorised folder index and the online piece memory hash contexts the same way."""
    rng = np.random.default_rng(1)
    pieces = [list(rng.integers(0, 6, n)) for n in (120, 80, 200)]
    folder = FolderMemory(pieces)
    query = PieceMemory(pieces[2][:150])
    online = PieceMemory(pieces[0] + [999] * 30 + pieces[1] + [998] * 30 + pieces[2][:150])
    r_folder = folder.recall(query._hashes)
    # the same tokens follow, ignoring contexts that span two pieces (the separators never match)
    assert r_folder.order > MIN_ORDER
    assert set(r_folder.tokens.tolist()) <= set(online.recall().tokens.tolist()) | set(range(6))
    expected = Counter()
    for seq in pieces:
        k = r_folder.order
        ctx = tuple(pieces[2][150 - k:150])
        expected += Counter(seq[i + k] for i in range(len(seq) - k) if tuple(seq[i:i + k]) == ctx)
    assert r_folder.seen == sum(expected.values()) and r_folder.distinct == len(expected)


def test_the_mixture_is_a_distribution_and_strength_zero_is_the_network():
    rng = np.random.default_rng(2)
    p = rng.random(50)
    p /= p.sum()
    memory = MemoryMixer(PieceMemory([1, 2, 3] * 20))
    q = memory.mixed(p)
    assert abs(q.sum() - 1) < 1e-9 and q[1] > p[1]  # after "... 2 3" comes 1
    assert np.array_equal(MemoryMixer(PieceMemory([1, 2, 3] * 20), strength=0).mixed(p), p)
    full = MemoryMixer(PieceMemory([1, 2, 3] * 20), strength=1e6)  # the gate's weight at its cap of 1
    assert np.allclose(full.mixed(p).sum(), 1.0)


def test_the_sampler_mixes_as_eval_does():
    """The sampler folds the mixture into the logits (core.sampling.with_memories); eval builds the whole
    distribution (MemoryMixer.mixed): the same probabilities, with the folder and the piece memory."""
    from core.sampling import with_memories
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, 40)) * 3)
    seq = list(rng.integers(0, 8, 300))
    memory = MemoryMixer(PieceMemory(seq), FolderMemory([seq[:150], list(rng.integers(0, 8, 200))]))
    out = with_memories(logits, [memory, None])
    p = torch.softmax(logits.double(), -1).numpy()
    assert np.allclose(torch.softmax(out[0].double(), -1).numpy(), memory.mixed(p[0].copy()), atol=1e-6)
    assert torch.equal(out[1], logits[1].float())  # a row without memory is left as it is


@pytest.fixture(scope="module")
def bundled():
    from core.network.checkpoint import load_checkpoint
    from core.paths import base_model
    from core.tokenizer import Tokenizer
    model, meta = load_checkpoint(str(base_model()))
    return model.eval(), Tokenizer.from_dict(meta["tokenizer"])


def test_the_piece_memory_lowers_the_bundled_models_bits_on_a_real_pop_song(bundled):
    """A POP909 song repeats its sections: with the memory, the real model predicts the second half of its
    first 3,000 tokens in fewer bits (grammar-masked both ways)."""
    from core.evaluate.memory_bits import piece_bits
    from core.midi import read_midi
    model, tok = bundled
    ids = tok.encode(read_midi(str(DATA / "pop909" / "001.mid"))[0])[:3000]
    bits = piece_bits(model, tok, ids, MemoryMixer(PieceMemory()))
    net, mixed = bits.network[1500:].sum(), bits.mixed[1500:].sum()
    assert mixed < 0.9 * net, (net, mixed)


def repeating_prompt(bars: int = 8) -> Score:
    """A two-bar motif, played `bars` / 2 times."""
    motif = [(0, 67), (480, 64), (960, 62), (1440, 60), (1920, 62), (2400, 64), (2880, 67), (3360, 72)]
    notes = [Note(rep * 3840 + t, 480, p, 80) for rep in range(bars // 2) for t, p in motif]
    return Score(notes)


def test_continuations_recall_the_prompts_motif_with_memory(bundled):
    """The real model continues a motif repeated four times: with the memory it plays the motif again."""
    from core.generate import Generator
    from core.sampling_config import SamplingConfig
    model, tok = bundled
    gen = Generator(model, tok)
    prompt = repeating_prompt()
    motif = [(n.start % 3840, n.pitch) for n in prompt.notes[:8]]

    def recalled(memory: float) -> float:
        hits = total = 0
        for seed in range(3):
            score = gen.generate(prompt, bars=2, sampling=SamplingConfig(seed=seed, memory=memory))[0]
            new = [(n.start % 3840, n.pitch) for n in score.notes if n.start >= prompt.end_tick]
            hits += sum(x in motif for x in new)
            total += max(len(new), len(motif))
        return hits / total

    with_memory = recalled(1.0)
    assert with_memory >= 0.75, with_memory
    assert with_memory > recalled(0.0)


def test_style_files_carry_the_folder_memory(bundled, tmp_path):
    from core.network.style import Style, StyleError, load_style, save_style
    model, tok = bundled
    pieces = [np.array([1, 5, 7, 9, 2]), np.array([1, 6, 8, 2])]
    path = tmp_path / "memory.pth"
    save_style(str(path), Style(memory_pieces=pieces), model)
    style = load_style(str(path), model)
    assert style.parts == () and style.has_memory
    assert [p.tolist() for p in style.memory_pieces] == [p.tolist() for p in pieces]
    assert style.memory.pieces == 2
    # a damaged file: lengths that do not add up are refused with a clear error
    obj = torch.load(str(path), weights_only=True)
    obj["memory:lengths"] = torch.tensor([4, 4])
    torch.save(obj, str(tmp_path / "bad.pth"))
    with pytest.raises(StyleError, match="memory"):
        load_style(str(tmp_path / "bad.pth"), model)
    obj["memory:lengths"] = torch.tensor([5, 4])
    obj["memory:tokens"] = torch.tensor([1, 5, 7, 9, 2, 1, 6, 8, 5000], dtype=torch.int16)
    torch.save(obj, str(tmp_path / "outside.pth"))
    with pytest.raises(StyleError, match="vocabulary"):
        load_style(str(tmp_path / "outside.pth"), model)


def test_train_mode_memory_writes_a_style_in_seconds_and_every_command_uses_it(tmp_path):
    """`rwkv-music train FOLDER --mode memory`, then `eval --style` and `generate --style` with it."""
    from core.paths import base_model
    folder = DATA / "corpus" / "essenFolksong"
    cli = [sys.executable, "-m", "core.cli"]
    out = subprocess.run(cli + ["train", str(folder), "--out", str(tmp_path / "mem"), "--base", str(base_model()),
                                "--mode", "memory"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "memory: learnt 4 pieces" in out.stdout
    style = tmp_path / "mem" / "style.pth"
    tune = DATA / "corpus" / "essenFolksong" / "altdeu10-1.mid"
    with_memory = subprocess.run(cli + ["eval", str(tune), "--style", str(style)], capture_output=True, text=True,
                                 timeout=300)
    assert with_memory.returncode == 0, with_memory.stderr
    assert "folder memory" in with_memory.stdout
    piece_only = subprocess.run(cli + ["eval", str(tune)], capture_output=True, text=True, timeout=300)
    assert "piece memory at strength 1" in piece_only.stdout and "folder" not in piece_only.stdout
    bare = subprocess.run(cli + ["eval", str(tune), "--no-memory"], capture_output=True, text=True, timeout=300)
    assert "bare network" in bare.stdout

    def bits(text: str) -> float:
        return float(text.split("bits/token, ")[1].split(" bits/note")[0])
    # the tune is in the folder: its memory helps, if little, since the fitted gate trusts long folder matches
    # least (a folder rarely holds the piece being played: quoting it is what the copy meter watches). This
    # 248-token tune barely repeats itself, so the piece memory alone gains nothing on it (measured 4.27 bits/note
    # masked against the bare network's 4.16 unmasked).
    assert bits(with_memory.stdout) < bits(piece_only.stdout)
    assert bits(with_memory.stdout) != bits(bare.stdout)
    gen = subprocess.run(cli + ["generate", "--prompt", str(tune), "--style", str(style), "--bars", "2", "--seed", "1",
                                "-o", str(tmp_path / "out.mid")], capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr and (tmp_path / "out.mid").is_file()


def test_copy_meter():
    from core.tokenizer import Tokenizer
    meter = Score([], time_signatures=[TimeSignature(0, 4, 4)])
    phrase = [Note(i * 480, 480, 60 + i % 5, 80) for i in range(12)]
    keys = phrase_keys(phrase, meter)
    assert len(keys) == 5 and keys[0][1] == (61, 480)  # (pitch, onset in the bar)
    tok = Tokenizer()
    piece = tok.encode(Score(phrase, time_signatures=[TimeSignature(0, 4, 4)]))
    reference = folder_phrases([piece], tok)
    assert copy_share(phrase, meter, reference) == 1.0
    moved = [Note(n.start + 120, n.duration, n.pitch, 80) for n in phrase]  # the same pitches off the beat
    assert copy_share(moved, meter, reference) == 0.0
    assert copy_share(phrase[:5], meter, reference) is None


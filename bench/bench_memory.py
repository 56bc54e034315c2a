"""The memories (core.memory) measured: bits per note with and without them, by position; the folder memory
against folder size; their cost per token and to build; the gates fitted on validation pieces.

    # fit the gates on validation pieces (never the held-out sets below); prints the arrays for core/memory.py
    .venv/bin/python bench/bench_memory.py fit --corpus data/corpus --pieces 12
    # bits/note of the bundled model with and without the piece memory, by position, on held-out sets
    .venv/bin/python bench/bench_memory.py eval --heldout data/heldout --pieces 60
    # the folder memory: N pieces of O'Neill's (held out) as the folder, other tunes as the test
    .venv/bin/python bench/bench_memory.py folder --heldout data/heldout --sizes 5 10 20 50 --draws 3
    # the cost: lookups and mixing per token at the bundled size, building the memory of 50 pieces
    .venv/bin/python bench/bench_memory.py speed --heldout data/heldout
    # a style trained on 10 O'Neill's tunes (the product's settings, or others: --train NAME=VALUE ...)
    .venv/bin/python bench/bench_memory.py --threads 2 style --heldout data/heldout

Held-out sets: POP909's test split read from the raw files as a user's file is read
(../shared/corpus/pop909/midi; the split is the v2 manifest's), O'Neill's 1850 collection (never trained on;
tools/make_corpus.py --collections oneills1850), and the Groove MIDI dataset's validation split (drums).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.network.checkpoint import load_checkpoint  # noqa: E402
from core.evaluate.bits import bits_per_note  # noqa: E402
from core.evaluate.files import file_tokens  # noqa: E402
from core.evaluate.memory_bits import (by_position, fit_gate, memory_trace, network_probs, piece_bits,  # noqa: E402
                                       trace_bits)
from core.memory import FOLDER_GATE, PIECE_GATE, FolderMemory, MemoryMixer, PieceMemory  # noqa: E402
from core.midi import MidiReadError  # noqa: E402
from core.paths import base_model  # noqa: E402
from core.tokenizer import Tokenizer  # noqa: E402
from core.sampling_config import DEFAULT_MEMORY, DEFAULT_TEMPERATURE, DEFAULT_TOP_P  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"
MANIFEST = ROOT / "resources" / "base-v2-corpus-manifest.json"


def print_table(headers: list[str], rows: list[list]) -> None:
    """A markdown table (pasted as is into the README)."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def encode_files(tok: Tokenizer, paths: list[Path]) -> list[list[int]]:
    out = []
    for p in paths:
        try:
            out.append(file_tokens(p, tok))
        except (MidiReadError, OSError) as e:
            print(f"skipped {p}: {e}", file=sys.stderr)
    return [ids for ids in out if len(ids) > 2]


def pop909_files(split: str, n: int) -> list[Path]:
    pieces = json.loads(MANIFEST.read_text())["pieces"]
    files = [p["file"].split("/")[-1] for p in pieces if p["collection"] == "pop909" and p["split"] == split]
    return [SHARED / "pop909" / "midi" / f for f in files[:n]]


def corpus_files(corpus: Path, collection: str, split: str, n: int) -> list[Path]:
    """Files of a collection's split (the v2 manifest's, so that no piece the model trained on is used)
    found in a corpus folder built by tools/make_corpus.py."""
    pieces = json.loads(MANIFEST.read_text())["pieces"]
    files = [corpus / p["file"] for p in pieces if p["collection"] == collection and p["split"] == split]
    return [f for f in files if f.is_file()][:n]


def groove_files(split: str, n: int) -> list[Path]:
    import csv
    with open(SHARED / "groove" / "info.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == split]
    return [SHARED / "groove" / r["file"] for r in rows][:n]


def heldout_sets(args, tok) -> dict[str, list[list[int]]]:
    sets = {"pop (POP909 test, raw files)": encode_files(tok, pop909_files("test", args.pieces))}
    oneills = sorted((Path(args.heldout) / "oneills1850").glob("*.mid"))
    if oneills:
        rng = random.Random(0)
        sets["folk (O'Neill's 1850)"] = encode_files(tok, rng.sample(oneills, min(len(oneills), args.pieces)))
    if (SHARED / "groove" / "info.csv").exists():
        sets["drums (Groove validation)"] = encode_files(tok, groove_files("validation", args.pieces))
    return sets


def load(args):
    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.model or str(base_model()))
    model.eval()
    return model, Tokenizer.from_dict(meta["tokenizer"]) if "tokenizer" in meta else Tokenizer()


def cmd_fit(args) -> None:
    """Gates that minimise bits on validation pieces: the piece gate over the network; the folder gate over
    the network, with folders of validation pieces and other validation pieces as the test."""
    model, tok = load(args)
    sets = {"pop909": encode_files(tok, pop909_files("validation", args.pieces))}
    for c in args.collections:
        for root in args.corpus:
            found = corpus_files(Path(root), c, "validation", args.pieces)
            if found:
                sets[c] = encode_files(tok, found)
                break
    if not args.folder_only:
        pieces = [ids for s in sets.values() for ids in s]
        print(f"fitting the piece gate on {len(pieces)} validation pieces ({', '.join(f'{k} {len(v)}' for k, v in sets.items())})")
        t0 = time.perf_counter()
        trace = memory_trace(model, tok, pieces)
        net = bits_per_note(float(-np.log2(trace.below_t / trace.below_z).sum()), trace.notes)
        piece_gate = fit_gate(trace, PIECE_GATE)
        print(f"  traced in {time.perf_counter() - t0:.0f} s; network {net:.3f} bits/note, today's gate "
              f"{bits_per_note(float(trace_bits(trace, PIECE_GATE)), trace.notes):.3f}, "
              f"fitted {bits_per_note(float(trace_bits(trace, piece_gate)), trace.notes):.3f}")
        print(f"PIECE_GATE = np.array({np.round(piece_gate, 3).tolist()})")
    folder_traces = []
    for c in args.folder_collections:  # a folder of training pieces, other (validation) pieces as the test
        for root in args.corpus:
            found = corpus_files(Path(root), c, "train", args.folder_size)
            if found:
                folder = FolderMemory(encode_files(tok, found))
                folder_traces.append(memory_trace(model, tok, sets[c], which="folder", folder=folder))
                print(f"  folder gate: {len(found)} {c} training pieces as the folder, {len(sets[c])} validation pieces")
                break
    if args.groove:  # music the bundled network never heard: Groove's training grooves (its validation split
        grooves = encode_files(tok, groove_files("train", args.folder_size + args.pieces))  # is held out)
        folder = FolderMemory(grooves[:args.folder_size])
        folder_traces.append(memory_trace(model, tok, grooves[args.folder_size:], which="folder", folder=folder))
        print(f"  folder gate: {args.folder_size} Groove training grooves as the folder, {args.pieces} others")
    if folder_traces:
        merged = type(folder_traces[0])(*(np.concatenate([getattr(t, f) for t in folder_traces])
                                          for f in ("below_t", "below_z", "mem_t", "mem_z", "escape", "features")),
                                        sum(t.notes for t in folder_traces))
        folder_gate = fit_gate(merged, FOLDER_GATE)
        network = bits_per_note(float(-np.log2(merged.below_t / merged.below_z).sum()), merged.notes)
        print(f"  folder: network {network:.3f}, "
              f"today's gate {bits_per_note(float(trace_bits(merged, FOLDER_GATE)), merged.notes):.3f}, fitted "
              f"{bits_per_note(float(trace_bits(merged, folder_gate)), merged.notes):.3f} bits/note")
        print(f"FOLDER_GATE = np.array({np.round(folder_gate, 3).tolist()})")


def cmd_eval(args) -> None:
    model, tok = load(args)
    rows, position_rows, out = [], [], {}
    for name, seqs in heldout_sets(args, tok).items():
        t0 = time.perf_counter()
        bits = [piece_bits(model, tok, ids, MemoryMixer(PieceMemory(), strength=args.memory)) for ids in seqs]
        notes = sum(b.notes for b in bits)
        net = bits_per_note(sum(float(b.network.sum()) for b in bits), notes)
        mixed = bits_per_note(sum(float(b.mixed.sum()) for b in bits), notes)
        rows.append([name, len(seqs), notes, f"{net:.2f}", f"{mixed:.2f}", f"{mixed / net - 1:+.1%}",
                     f"{time.perf_counter() - t0:.0f}"])
        for r in by_position(bits):
            position_rows.append([name, r["positions"], r["tokens"], f"{r['network']:.3f}", f"{r['memory']:.3f}",
                                  f"{r['change']:+.1%}"])
        out[name] = {"pieces": len(seqs), "notes": notes, "network": net, "memory": mixed, "by_position": by_position(bits)}
    print_table(["set", "pieces", "notes", "network bits/note", "+ piece memory", "change", "s"], rows)
    print()
    print_table(["set", "tokens", "scored", "network bits/token", "+ piece memory", "change"], position_rows)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


def cmd_folder(args) -> None:
    """Folder memory against folder size: N tunes of O'Neill's (or N Groove grooves: --set drums, folders
    from its training split, tests from its validation split) as the folder, `--test` others scored, with and
    without the piece memory; several draws."""
    model, tok = load(args)
    if args.set == "drums":
        tunes = encode_files(tok, groove_files("train", 400))
        tests = encode_files(tok, groove_files("validation", 200))
    else:
        tunes = encode_files(tok, sorted((Path(args.heldout) / "oneills1850").glob("*.mid")))
        tests = None
    rng = random.Random(1)
    rows = []
    for n in args.sizes:
        results = {"network": [], "piece": [], "piece + folder": [], "folder": []}
        build = []
        for draw in range(args.draws):
            if tests is None:
                pick = rng.sample(range(len(tunes)), n + args.test)
                folder_ids, test_ids = [tunes[i] for i in pick[:n]], [tunes[i] for i in pick[n:]]
            else:
                folder_ids, test_ids = rng.sample(tunes, n), rng.sample(tests, args.test)
            t0 = time.perf_counter()
            folder = FolderMemory(folder_ids)
            build.append(time.perf_counter() - t0)
            totals = {k: 0.0 for k in results}
            notes = 0
            for ids in test_ids:
                p_net = network_probs(model, ids)
                both = piece_bits(model, tok, ids, MemoryMixer(PieceMemory(), folder), p_net)
                piece = piece_bits(model, tok, ids, MemoryMixer(PieceMemory()), p_net)
                alone = piece_bits(model, tok, ids, MemoryMixer(PieceMemory(), folder, use_piece=False), p_net)
                totals["network"] += float(both.network.sum())
                totals["piece"] += float(piece.mixed.sum())
                totals["piece + folder"] += float(both.mixed.sum())
                totals["folder"] += float(alone.mixed.sum())
                notes += both.notes
            for k in results:
                results[k].append(bits_per_note(totals[k], notes))
        net = statistics.mean(results["network"])
        rows.append([n, args.draws, f"{net:.3f}"] + [f"{statistics.mean(results[k]):.3f} ({statistics.mean(results[k]) / net - 1:+.0%})"
                                                       for k in ("folder", "piece", "piece + folder")]
                    + [f"{statistics.mean(build) * 1000:.0f}"])
    print_table(["folder tunes", "draws", "network", "+ folder memory", "+ piece memory", "+ both", "build ms"], rows)


def cmd_speed(args) -> None:
    """What the memories add to generation at the bundled size, one thread: per token, the mixture applied to
    the logits (core.sampling.with_memories: both memories looked up, gated, folded in) and the piece memory's
    update, over 1,000 tokens of a pop song after its first 3,000; per stream, building the memories."""
    from core.sampling import with_memories
    model, tok = load(args)
    tunes = encode_files(tok, sorted((Path(args.heldout) / "oneills1850").glob("*.mid"))[:50])
    song = encode_files(tok, pop909_files("test", 1))[0]
    t0 = time.perf_counter()
    folder = FolderMemory(tunes)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    prompt_memory = PieceMemory(song[:3000])
    piece_build = time.perf_counter() - t0
    logits = torch.from_numpy(network_probs(model, song[:4001])[3000:]).log().float()
    rows = []
    for i in range(200):  # warm-up: first calls of numpy and torch paths
        with_memories(logits[i:i + 1], [MemoryMixer(prompt_memory.fork(), folder)])
    for name, folder_memory in (("piece memory", None), ("piece + folder memory (50 tunes)", folder)):
        memory = MemoryMixer(prompt_memory.fork(), folder_memory)
        times = []
        for i, t in enumerate(song[3000:4000]):
            t1 = time.perf_counter()
            with_memories(logits[i:i + 1], [memory])
            memory.append(t)
            times.append(time.perf_counter() - t1)
        rows.append([name, f"{statistics.median(times) * 1000:.3f}", f"{np.percentile(times, 99) * 1000:.3f}"])
    print(f"building: the folder memory of {len(tunes)} tunes ({folder.tokens:,} tokens) {build * 1000:.0f} ms; "
          f"the piece memory of a 3,000-token prompt {piece_build * 1000:.0f} ms")
    print_table(["per token", "median ms", "p99 ms"], rows)


def cmd_continue(args) -> None:
    """Continuations of held-out prompts: the network alone, with the memories at their default, and "repeat
    the prompt's last bars", each against the true continuation; the copy meter against a folder of other
    tunes of the collection (the style's folder memory), beside the true continuation's own share."""
    from core.copying import copy_share, folder_phrases, phrase_keys
    from core.evaluate import music as MM
    from core.generate import Generator
    from core.sampling_config import SamplingConfig
    from core.score import TICKS_PER_BEAT, Note
    model, tok = load(args)
    gen = Generator(model, tok)
    oneills = sorted((Path(args.heldout) / "oneills1850").glob("*.mid"))
    rng = random.Random(2)
    rng.shuffle(oneills)
    folder_tunes = encode_files(tok, oneills[:args.folder])
    folder = FolderMemory(folder_tunes)  # the style's folder memory, and its phrases for the copy meter
    reference = folder_phrases(folder_tunes, tok)
    if args.split == "test":
        folk_prompts = oneills[args.folder:args.folder + 3 * args.prompts]
    else:  # for choosing defaults: tunes the test prompts and the folder never use, POP909's validation songs
        folk_prompts = oneills[-3 * args.prompts:]
    sets = {"folk (O'Neill's)": (folk_prompts, 8, 4),
            f"pop (POP909 {args.split}, raw)": (pop909_files(args.split, 3 * args.prompts), 16, 4)}
    summary = []
    for name, (files, k, m) in sets.items():
        rows = {"network": [], "memory": [], "memory + folder": [], "repeat last bars": [], "true": []}
        copies = {key: [] for key in rows}
        stacked = {key: 0 for key in rows}
        used = 0
        for f in files:
            if used >= args.prompts:
                break
            # the piece as the model sees it (its grid, its meter), so that every output is compared on one grid
            score, _ = tok.decode(file_tokens(f, tok))
            bars = score.bar_starts(score.end_tick)
            if len(bars) < k + m + 1:
                continue
            split, stop = bars[k], bars[k + m]
            prompt = score.slice(0, split)
            prompt_notes = [n for n in score.notes if n.start < split]
            true = [n for n in score.notes if split <= n.start < stop]
            if not true:
                continue
            used += 1
            lo = bars[k - m]
            outputs = {"true": true,
                       "repeat last bars": [Note(n.start + split - lo, n.duration, n.pitch, n.velocity, n.program, n.drum)
                                            for n in prompt_notes if lo <= n.start]}
            for label, memory, folder_memory in (("network", 0.0, None), ("memory", args.memory, None),
                                                 ("memory + folder", args.memory, folder)):
                gen.folder_memory = folder_memory
                stream = gen.stream(prompt, bars=m, at_tick=split,
                                    sampling=SamplingConfig(seed=used, memory=memory, grid=not args.no_grid,
                                                            temperature=args.temperature, top_p=args.top_p))
                outputs[label] = [item.note for item in stream]
            prompt_keys = set(phrase_keys(prompt_notes, score))
            for label, notes in outputs.items():
                row = MM.compare_continuation(prompt_notes, notes, true, m, TICKS_PER_BEAT)
                keys = phrase_keys(notes, score)
                row["self_repetition"] = sum(k_ in prompt_keys for k_ in keys) / len(keys) if keys else math.nan
                rows[label].append(row)
                share = copy_share(notes, score, reference)
                if share is not None:
                    copies[label].append(share)
                stacked[label] += len(notes) - len({(n.start, n.pitch, n.instrument) for n in notes})
        gen.folder_memory = None
        for label in rows:
            mean = MM.mean_metrics(rows[label])
            summary.append([f"{name} ({used})", label] + [f"{mean.get(c, math.nan):.3f}" for c in
                           ("pitch_class_overlap", "ioi_overlap", "velocity_overlap", "density_ratio", "in_key",
                            "self_repetition")]
                           + [f"{statistics.mean(copies[label]):.3f}" if copies[label] else "-", stacked[label]])
    print_table(["set (prompts)", "", "pitch-class overlap", "inter-onset overlap", "velocity overlap",
                 "density ratio", "in key", "self-repetition", f"copy meter ({args.folder} tunes)",
                 "stacked duplicates"], summary)


def cmd_style(args) -> None:
    """The product's default with a trained style: N tunes of O'Neill's as the user's folder, a style trained
    on them for --budget seconds (`rwkv-music train --mode style`, which also writes the folder's memory),
    other tunes as the test: the bare network, the style alone, the memories alone, both."""
    import shutil
    import tempfile

    from core.network.style import StyledModel, load_style
    from core.training.train import run_training
    from core.training.train_config import TrainConfig
    model, tok = load(args)
    styled_model = StyledModel(model)  # the network with the style, while one is applied
    tunes = sorted((Path(args.heldout) / "oneills1850").glob("*.mid"))
    rng = random.Random(3)
    rows = []
    for n in args.sizes:
        for draw in range(args.draws):
            pick = rng.sample(tunes, n + args.test)
            work = Path(tempfile.mkdtemp(prefix="bench_memory_style_"))
            folder = work / "folder"
            folder.mkdir()
            for f in pick[:n]:
                (folder / f.name).symlink_to(f.resolve())
            t0 = time.perf_counter()
            settings = dict(data=str(folder), out=str(work / "run"), base=args.model or str(base_model()),
                            mode="style", time_budget_s=args.budget, threads=args.threads, workers=1)
            settings.update(dict(args.train))
            run_training(TrainConfig(**settings))
            trained = time.perf_counter() - t0
            style = load_style(str(work / "run" / "style.pth"), model)
            steps = f"{style.meta.get('step', '?')} of {style.meta.get('last_step', style.meta.get('step', '?'))}"
            test = encode_files(tok, pick[n:])
            totals = {k: 0.0 for k in ("network", "style", "memory", "style + memory")}
            notes = 0
            for ids in test:
                styled_model.remove()
                p_net = network_probs(model, ids)
                bare = piece_bits(model, tok, ids, MemoryMixer(PieceMemory(), style.memory), p_net)
                styled_model.apply(style)
                styled = piece_bits(styled_model, tok, ids, MemoryMixer(PieceMemory(), style.memory))
                totals["network"] += float(bare.network.sum())
                totals["memory"] += float(bare.mixed.sum())
                totals["style"] += float(styled.network.sum())
                totals["style + memory"] += float(styled.mixed.sum())
                notes += bare.notes
            styled_model.remove()
            net = bits_per_note(totals["network"], notes)
            rows.append([n, draw + 1, f"{trained:.0f}", steps, f"{net:.3f}"] +
                        [f"{bits_per_note(totals[k], notes):.3f} ({bits_per_note(totals[k], notes) / net:.0%})"
                         for k in ("style", "memory", "style + memory")])
            shutil.rmtree(work, ignore_errors=True)
    print_table(["folder tunes", "draw", "train s", "step kept, of", "network", "style", "memories (piece + folder)",
                 "style + memories"], rows)


@torch.no_grad()
def hidden_and_probs(model, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's last hidden state (after ln_out) and next-token probabilities at every position."""
    idx = torch.tensor(ids[:-1])[None]
    x, _ = model._hidden(idx, None, "prefill")
    h = model.ln_out(x)[0]
    return h, torch.softmax(model.head(h).double(), -1)


def cmd_knn(args) -> None:
    """The other candidate for the piece memory: kNN over the network's own hidden states (kNN-LM,
    Khandelwal et al. 2020), the datastore being the piece so far: for position i, the k nearest earlier
    hidden states vote for the tokens that followed them (weights exp(-distance / T)), mixed at a fixed lambda.
    Lambda and T are picked on the same pieces (an upper bound for it), against the fitted suffix memory."""
    model, tok = load(args)
    sets = heldout_sets(args, tok)
    rows = []
    for name, seqs in sets.items():
        if name.startswith("drums"):
            continue
        grid = {(lam, temp): 0.0 for lam in (0.1, 0.2, 0.3, 0.5) for temp in (1.0, 3.0, 10.0)}
        net = suffix = masked = 0.0
        notes = 0
        for ids in seqs:
            h, p = hidden_and_probs(model, ids)
            targets = torch.tensor(ids[1:])
            n = len(targets)
            p_t = p[torch.arange(n), targets]
            d = torch.cdist(h.float(), h.float())  # [n, n]: position i may use j < i only
            d = d.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(), float("inf"))
            k = min(args.k, n)
            dist, nn = torch.topk(d, k, dim=1, largest=False)
            hit = (targets[nn] == targets[:, None]) & torch.isfinite(dist)
            for (lam, temp) in grid:
                w = torch.exp(-(dist - dist[:, :1]) / temp).masked_fill(~torch.isfinite(dist), 0.0)
                knn_t = (w * hit).sum(1) / w.sum(1).clamp_min(1e-12)
                has = torch.isfinite(dist[:, 0])
                mixed = torch.where(has, (1 - lam) * p_t + lam * knn_t.double(), p_t)
                grid[(lam, temp)] += float(-torch.log2(mixed).sum())
            net += float(-torch.log2(p_t).sum())
            bits = piece_bits(model, tok, ids, MemoryMixer(PieceMemory()))
            suffix += float(bits.mixed.sum())
            masked += float(bits.network.sum())
            notes += bits.notes
        (lam, temp), best = min(grid.items(), key=lambda kv: kv[1])
        rows.append([name, len(seqs), f"{bits_per_note(net, notes):.3f}",
                     f"{bits_per_note(best, notes):.3f} ({best / net - 1:+.1%}; lambda {lam}, T {temp})",
                     f"{bits_per_note(masked, notes):.3f}",
                     f"{bits_per_note(suffix, notes):.3f} ({suffix / masked - 1:+.1%})"])
    print_table(["set", "pieces", "network", f"+ kNN of hidden states (k {args.k}, best of a grid)",
                 "network, grammar-masked", "+ suffix memory (fitted gate), masked"], rows)


def _setting(text: str) -> tuple[str, object]:
    """NAME=VALUE, the value read as JSON where it is JSON (numbers, true/false, null), else as text."""
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="default: the bundled base model")
    p.add_argument("--threads", type=int, default=1)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("fit")
    s.add_argument("--corpus", nargs="+", default=["data/corpus"], help="corpus folders (tools/make_corpus.py)")
    s.add_argument("--collections", nargs="*", default=["essenFolksong", "ryansMammoth", "bach"])
    s.add_argument("--pieces", type=int, default=12, help="per collection")
    s.add_argument("--folder-collections", nargs="*", default=["essenFolksong", "ryansMammoth"])
    s.add_argument("--folder-size", type=int, default=30)
    s.add_argument("--groove", action="store_true", help="fit the folder gate on drum grooves too")
    s.add_argument("--folder-only", action="store_true", help="fit the folder gate only")
    s = sub.add_parser("eval")
    s.add_argument("--heldout", default="data/heldout")
    s.add_argument("--pieces", type=int, default=60)
    s.add_argument("--memory", type=float, default=1.0)
    s.add_argument("--json")
    s = sub.add_parser("folder")
    s.add_argument("--heldout", default="data/heldout")
    s.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 50])
    s.add_argument("--draws", type=int, default=3)
    s.add_argument("--test", type=int, default=30)
    s.add_argument("--set", choices=["folk", "drums"], default="folk")
    s = sub.add_parser("speed")
    s.add_argument("--heldout", default="data/heldout")
    s.add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("continue")
    s.add_argument("--heldout", default="data/heldout")
    s.add_argument("--prompts", type=int, default=20)
    s.add_argument("--folder", type=int, default=20, help="O'Neill's tunes in the folder memory")
    s.add_argument("--memory", type=float, default=DEFAULT_MEMORY)
    s.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    s.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    s.add_argument("--no-grid", action="store_true", help="onsets anywhere, not only on the prompt's grid")
    s.add_argument("--split", choices=["test", "validation"], default="test",
                   help="validation: prompts kept apart from the test's, for choosing the defaults")
    s = sub.add_parser("style")
    s.add_argument("--heldout", default="data/heldout")
    s.add_argument("--sizes", type=int, nargs="+", default=[10])
    s.add_argument("--draws", type=int, default=1)
    s.add_argument("--test", type=int, default=30)
    s.add_argument("--budget", type=float, default=120.0)
    s.add_argument("--train", nargs="*", default=[], type=_setting, metavar="NAME=VALUE",
                   help="TrainConfig settings over the product's (e.g. steps=40 time_budget_s=null keep_best=false "
                        "lr=3e-4 style_parts=state; keep_best=false scores the last step's style)")
    s = sub.add_parser("knn")
    s.add_argument("--heldout", default="data/heldout")
    s.add_argument("--pieces", type=int, default=20)
    s.add_argument("--k", type=int, default=16)
    args = p.parse_args()
    {"fit": cmd_fit, "eval": cmd_eval, "folder": cmd_folder, "speed": cmd_speed, "continue": cmd_continue,
     "knn": cmd_knn, "style": cmd_style}[args.cmd](args)


if __name__ == "__main__":
    main()

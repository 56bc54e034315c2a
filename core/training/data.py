"""Training data: scan a MIDI folder, cache its tokens, split by piece, cut windows, build batches.

A window always starts where a listener could start: at the piece's beginning, or at a Bar token
prefixed by the tokenizer's header for that bar (BOS, tempo and time signature in force there), or,
inside a bar too long for one window, at an onset with the instrument and velocity restated too. No
window ever trains on music whose tempo and meter it cannot see, and every window is a valid
sequence for the tokenizer's grammar.

Inputs, targets and the loss mask of an example come out of ONE function (`build_example`) so that
they have the same length by construction, whatever the length of the token list.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from bisect import bisect_right
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..atomic import atomic_write
from .. import infill_layout
from .. import paths

MIDI_SUFFIXES = (".mid", ".midi")
PAD_MULTIPLE = 16  # the WKV training kernels need T to be a multiple of 16
# A piece's last window is moved back to earlier bars until it holds at least this fraction of the
# context, so the tail of a piece is never learnt from a nearly empty context.
MIN_CONTEXT_RATIO = 0.5
PARALLEL_MIN_FILES = 8  # below this, worker processes cost more to start than they save


# --- scanning ----------------------------------------------------------------------------------
@dataclass
class Piece:
    path: str          # relative to the scanned folder, POSIX separators
    digest: str        # content hash
    tokens: np.ndarray  # int32 token ids, BOS ... EOS
    notes: int


@dataclass
class ScanReport:
    folder: str
    tokenizer_version: str
    used: list[dict] = field(default_factory=list)     # {path, notes, tokens, cached}
    skipped: list[dict] = field(default_factory=list)  # {path, reason}
    notes: int = 0
    tokens: int = 0
    from_cache: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{len(self.used)} files used ({self.from_cache} from cache), {len(self.skipped)} skipped, "
                f"{self.notes} notes, {self.tokens} tokens")


def find_midi_files(folder: str | os.PathLike) -> list[Path]:
    """Every .mid/.midi file under `folder` (any case), sorted for a stable order."""
    root = Path(folder)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def default_cache_dir() -> Path:
    """Where tokenized corpora are kept when no folder is given: the user's cache, tokens/."""
    return paths.cache_dir("tokens")


# of Score.token_view; 2: the inferred meter of files that declare a beat as the bar (core.meter);
# 3: notes quantised off the file's grid moved onto it (core.meter.grid_shift)
VIEW_VERSION = 3


def _tokenizer_key(tokenizer) -> str:
    config = json.dumps(tokenizer.to_dict(), sort_keys=True, default=str).encode()
    return f"v{tokenizer.VERSION}-{hashlib.sha1(config).hexdigest()[:10]}-view{VIEW_VERSION}"


def _tokenize_bytes(data: bytes, tokenizer_dict: dict) -> tuple[list[int] | None, int, str]:
    """Worker: MIDI bytes -> (tokens, notes, "") or (None, 0, one-line reason). Never raises."""
    try:
        from core.midi import read_midi
        from core.tokenizer import Tokenizer
        score, _report = read_midi(data)
        tokens = Tokenizer.from_dict(tokenizer_dict).encode(score.token_view())  # the model's view (core.meter)
        if not score.notes:
            return None, 0, "no notes"
        return list(tokens), len(score.notes), ""
    except Exception as e:  # a broken file must never stop a scan
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, 0, reason


class _TokenCache:
    """One small file per piece, keyed by content hash, in a folder per tokenizer version."""

    def __init__(self, root: Path, tokenizer) -> None:
        self.dir = Path(root) / _tokenizer_key(tokenizer)

    def get(self, digest: str):
        ok, err = self.dir / f"{digest}.npz", self.dir / f"{digest}.err"
        try:
            if ok.exists():
                with np.load(ok, allow_pickle=False) as z:
                    return z["tokens"].astype(np.int32), int(z["notes"]), ""
            if err.exists():
                return None, 0, err.read_text().strip() or "unreadable"
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is simply recomputed
        return None

    def put(self, digest: str, tokens, notes: int, reason: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if tokens is not None:
            with atomic_write(self.dir / f"{digest}.npz") as f:
                np.savez(f, tokens=np.asarray(tokens, dtype=np.int32), notes=np.int64(notes))
        else:
            with atomic_write(self.dir / f"{digest}.err", "w") as f:
                f.write(reason + "\n")


def scan_folder(folder: str | os.PathLike, tokenizer, cache_dir: str | os.PathLike | None = None,
                workers: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[list[Piece], ScanReport]:
    """Tokenize every MIDI file under `folder`; files whose content and tokenizer are unchanged come from
    the cache. Returns the usable pieces and a report naming each skipped file with its reason."""
    root = Path(folder)
    files = find_midi_files(root)
    cache = _TokenCache(Path(cache_dir) if cache_dir else default_cache_dir(), tokenizer)
    results, todo = _read_or_recall(files, cache)
    done = len(results)
    if progress:
        progress(done, len(files))

    def record(f: Path, digest: str, out: tuple) -> None:
        nonlocal done
        cache.put(digest, *out)
        results[f] = (digest, *out, False)
        done += 1
        if progress:
            progress(done, len(files))

    _tokenize_all(todo, tokenizer.to_dict(), workers, record)
    report = ScanReport(folder=str(root), tokenizer_version=str(tokenizer.VERSION))
    return _pieces_in_order(root, files, results, report), report


def _read_or_recall(files: list[Path], cache: "_TokenCache") -> tuple[dict[Path, tuple], list[tuple[Path, str, bytes]]]:
    """Each file's result from the cache or the reason it cannot be read ({file: (digest, tokens, notes,
    reason, cached)}), and the files still to tokenize as (file, digest, bytes)."""
    from core.midi import MAX_FILE_BYTES
    results: dict[Path, tuple] = {}
    todo: list[tuple[Path, str, bytes]] = []
    for f in files:
        try:
            if f.stat().st_size > MAX_FILE_BYTES:  # not read into memory at all
                results[f] = ("", None, 0, f"too large for a MIDI file ({f.stat().st_size} bytes)", False)
                continue
            data = f.read_bytes()
        except OSError as e:
            results[f] = ("", None, 0, f"cannot read: {e.strerror or e}", False)
            continue
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        hit = cache.get(digest)
        if hit is not None:
            results[f] = (digest, *hit, True)
        else:
            todo.append((f, digest, data))
    return results, todo


def _tokenize_all(todo: list[tuple[Path, str, bytes]], tok_dict: dict, workers: int | None,
                  record: Callable[[Path, str, tuple], None]) -> None:
    """Tokenize the files of `todo`, in worker processes when there are enough of them, recording each."""
    n_workers = min(workers if workers is not None else (os.cpu_count() or 1), len(todo))
    recorded = set()
    if n_workers > 1 and len(todo) >= PARALLEL_MIN_FILES:
        # spawn: safe from any thread of a GUI and after torch has started its own threads
        try:
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                outs = pool.map(_tokenize_bytes, [d for _, _, d in todo], [tok_dict] * len(todo), chunksize=4)
                for (f, digest, _), out in zip(todo, outs):
                    record(f, digest, out)
                    recorded.add(f)
        except BrokenProcessPool:
            pass  # a worker died (not an exception: those are caught): finish in this process
    for f, digest, data in todo:
        if f not in recorded:
            record(f, digest, _tokenize_bytes(data, tok_dict))


def _pieces_in_order(root: Path, files: list[Path], results: dict[Path, tuple], report: ScanReport) -> list[Piece]:
    """The usable pieces in the files' order, each used or skipped file written into `report`."""
    pieces = []
    for f in files:
        name = f.relative_to(root).as_posix() if root.is_dir() else f.name
        digest, tokens, notes, reason, cached = results[f]
        if tokens is None:
            report.skipped.append({"path": name, "reason": reason})
            continue
        tokens = np.asarray(tokens, dtype=np.int32)
        pieces.append(Piece(name, digest, tokens, notes))
        report.used.append({"path": name, "notes": notes, "tokens": int(len(tokens)), "cached": cached})
        report.notes += notes
        report.tokens += int(len(tokens))
        report.from_cache += int(cached)
    return pieces


# --- split -------------------------------------------------------------------------------------
def _unit_hash(text: str, seed: int) -> float:
    h = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def split_pieces(pieces: Sequence[Piece], val_fraction: float = 0.1,
                 seed: int = 0) -> tuple[list[Piece], list[Piece]]:
    """Deterministic split by piece (hash of its relative path): the same file always lands on the same
    side, whatever else is in the folder. With two or more pieces and val_fraction > 0 both sides get
    at least one piece."""
    if val_fraction <= 0 or len(pieces) < 2:
        return list(pieces), []
    keyed = sorted(pieces, key=lambda p: _unit_hash(p.path, seed))
    val = [p for p in keyed if _unit_hash(p.path, seed) < val_fraction]
    if not val:
        val = keyed[:1]
    if len(val) == len(keyed):
        val = val[:-1]
    val_paths = {p.path for p in val}
    return [p for p in pieces if p.path not in val_paths], [p for p in pieces if p.path in val_paths]


def cap_validation(train: Sequence[Piece], val: Sequence[Piece], tokenizer, ctx_len: int, max_windows: int,
                   seed: int = 0) -> tuple[list[Piece], list[Piece]]:
    """Validation reads at most `max_windows` windows, so the pieces past those (in hash order) train
    instead: a large folder gives validation no more than it uses. Which pieces stay does not depend on
    the order the folder lists them in."""
    keep, windows = [], 0
    for p in sorted(val, key=lambda p: _unit_hash(p.path, seed)):
        if windows >= max_windows:
            break
        keep.append(p)
        windows += len(piece_windows(p.tokens, tokenizer, ctx_len))
    kept = {p.path for p in keep}
    return list(train) + [p for p in val if p.path not in kept], [p for p in val if p.path in kept]


# --- windows -----------------------------------------------------------------------------------
def _mid_bar_start(tokenizer, ids: list[int], pos_index: int) -> tuple[int, list[int]] | None:
    """Open a window at the onset (Pos token) `pos_index` inside a bar too long for one window:
    (first piece token, header). The header states everything in force there: BOS, tempo, Bar,
    meter, the Pos itself (and its tempo change), then the instrument and velocity that the notes
    after it take for granted. None if the piece does not allow it."""
    g = tokenizer.grammar()
    for t in ids[:pos_index]:
        g.feed_lenient(t)
    if g.meter is None:
        return None
    kind = tokenizer.kind
    head = [tokenizer.bos_id] + ([tokenizer.tempo_id(g.tempo)] if g.tempo is not None else [])
    head += [tokenizer.bar_id, tokenizer.timesig_id(*g.meter), ids[pos_index]]
    i, n = pos_index + 1, len(ids)
    if i < n and kind(ids[i]) == "tempo":
        head.append(ids[i])
        i += 1
    velocity = tokenizer.ids_of_kind("velocity")[g.velocity] if g.velocity is not None else None
    if i < n and kind(ids[i]) == "instrument":
        head.append(ids[i])
        i += 1
        if i < n and kind(ids[i]) == "pitch":
            if velocity is None:
                return None
            head.append(velocity)
    elif i < n and kind(ids[i]) in ("velocity", "pitch"):
        if g.instrument is None:
            return None
        head.append(tokenizer.instrument_id(*g.instrument))
        if kind(ids[i]) == "pitch":
            if velocity is None:
                return None
            head.append(velocity)
    return i, head


def piece_windows(tokens: Sequence[int], tokenizer, ctx_len: int,
                  bar_headers: Sequence[tuple[int, list[int]]] | None = None) -> list[tuple[int, int, list[int]]]:
    """(start, end, header) of the windows that tile one piece. A window's tokens are
    header + tokens[start:end]: the piece's own beginning (start 0, empty header), or the tokenizer's
    header for a Bar (BOS, tempo and meter in force, Bar) followed by what comes after that Bar.
    A bar too long for one window is continued from an onset inside it, with a header that also
    states the instrument and velocity in force there. Each window holds at most ctx_len + 1 tokens
    (ctx_len inputs and the last target); consecutive windows overlap by the bar (or onset) that the
    previous one cut. `bar_headers`: tokenizer.bar_headers(tokens), when the caller has it already."""
    ids = [int(t) for t in tokens]
    n = len(ids)
    if n == 0:
        return []
    budget = ctx_len + 1
    # a Bar at i is replaced by its header: the window then continues at i + 1
    heads = {i: h for i, h in (tokenizer.bar_headers(ids) if bar_headers is None else bar_headers) if 0 < i < n - 1}
    bars = sorted(heads)
    starts = {0: (0, [])}  # window start key (a Bar or Pos index) -> (first piece token, header)
    for i, h in heads.items():
        starts[i] = (i + 1, h)

    def end_of(s: int) -> int:
        first, head = starts[s]
        return min(n, first + max(1, budget - len(head)))

    windows, start = [], 0
    while True:
        end = end_of(start)
        if end >= n:
            # the tail: move it back to earlier bars while it still fits whole and is short of context
            best = start
            for b in reversed(bars[:bisect_right(bars, start - 1)]):
                if n - starts[best][0] + len(starts[best][1]) >= MIN_CONTEXT_RATIO * budget or end_of(b) < n:
                    break
                best = b
            windows.append((starts[best][0], n, starts[best][1]))
            break
        windows.append((starts[start][0], end, starts[start][1]))
        # restart at the bar that this window cut (the overlap)
        inside = bars[bisect_right(bars, start):bisect_right(bars, end - 1)]
        if inside and end_of(inside[-1]) > end:
            start = inside[-1]
            continue
        # a bar too long for the context: go on from the last onset this window reached
        first = starts[start][0]
        onsets = [q for q in range(end - 1, first, -1) if tokenizer.kind(ids[q]) == "pos"]
        mid = _mid_bar_start(tokenizer, ids, onsets[0]) if onsets else None
        if mid is not None:
            starts[onsets[0]] = mid
            if end_of(onsets[0]) > end:  # it reaches further than this window did
                start = onsets[0]
                continue
        after = bars[bisect_right(bars, end - 1):]  # a single onset longer than the context: skip it
        if not after:
            break
        start = after[0]
    return windows


class Window(NamedTuple):
    piece: int             # index into the piece list
    start: int             # first token of the piece in this window
    end: int               # one past the last token of the piece in this window
    header: tuple = ()     # tokens restated before it (empty at the piece's start)

    @property
    def n_tokens(self) -> int:
        return len(self.header) + self.end - self.start


def make_windows(pieces: Sequence[Piece], tokenizer, ctx_len: int,
                 bar_headers: Sequence | None = None) -> list[Window]:
    """The windows that tile every piece (bar_headers: each piece's tokenizer.bar_headers, if known)."""
    out: list[Window] = []
    for i, p in enumerate(pieces):
        heads = None if bar_headers is None else bar_headers[i]
        out.extend(Window(i, s, e, tuple(h)) for s, e, h in piece_windows(p.tokens, tokenizer, ctx_len, heads))
    return out


def window_tokens(pieces: Sequence[Piece], w: Window) -> tuple[list[int], int]:
    """The token list of a window and the length of its restated header."""
    return list(w.header) + [int(t) for t in pieces[w.piece].tokens[w.start:w.end]], len(w.header)


# --- infill examples ---------------------------------------------------------------------------
MAX_PART_BARS = 16  # the longest bar range a part infill example covers


def _bars(tokenizer, ids: list[int]) -> tuple[list[int], dict[int, list[int]], int]:
    """Bar token indices, the header of each, and where the music ends: after its last complete note or
    onset (a window may cut a note in two), before EOS."""
    heads = dict(tokenizer.bar_headers(ids))
    g, end = tokenizer.grammar(), 0
    for i, t in enumerate(ids):
        if g.feed_lenient(t) and g.at_boundary:
            end = i + 1
    return [b for b in sorted(heads) if b < end], heads, end


def bar_infill_tokens(ids: Sequence[int], tokenizer, rng, budget: int, max_gap: int = 8,
                      layout: tuple | None = None) -> list[int] | None:
    """A fill-in-the-middle example cut from one valid sequence (a window), k bars at random taken out
    (bar_gap_tokens). None when the sequence has no bar to take out. `layout`: _bars(ids) if known."""
    ids = [int(t) for t in ids]
    layout = layout or _bars(tokenizer, ids)
    bars, _, end = layout
    if len(bars) < 2 or not tokenizer.infill:
        return None
    bar_end = bars[1:] + [end]
    k = rng.randint(1, min(max_gap, len(bars) - 1))
    a = rng.randint(0, len(bars) - k)
    while k > 1 and bar_end[a + k - 1] - bars[a] > budget // 2:  # the middle gets at most half the budget
        k -= 1
    return bar_gap_tokens(ids, tokenizer, a, k, budget, layout)


def bar_gap_tokens(ids: list[int], tokenizer, first: int, k: int, budget: int,
                   layout: tuple | None = None) -> list[int] | None:
    """The example with the k bars from the window's bar `first` (counted from 0) taken out, laid out by
    core.infill_layout: bars before, Gap_k, the bars after, Fill, the k bars, EOS. At most `budget` tokens
    (the bars furthest from the gap are left out first); None when even the gap alone is over."""
    bars, heads, end = layout or _bars(tokenizer, ids)
    bar_end = bars[1:] + [end]
    middle = infill_layout.middle(tokenizer, heads[bars[first]] + ids[bars[first] + 1:bar_end[first + k - 1]])
    middle.append(tokenizer.eos_id)
    after = heads[bars[first + k]] + ids[bars[first + k] + 1:end] if first + k < len(bars) else []
    gap = infill_layout.bar_gap(tokenizer, k, ids[:bars[first]], [(b, heads[b]) for b in bars[:first]],
                                infill_layout.opening(tokenizer, heads[bars[first]]), after)
    seq = gap.fitted(lambda context: len(context) + len(middle) <= budget) + middle
    return seq if len(seq) <= budget else None


def part_infill_tokens(ids: Sequence[int], tokenizer, rng, budget: int,
                       max_bars: int = MAX_PART_BARS, layout: tuple | None = None) -> list[int] | None:
    """A part-infill example cut from one valid sequence, bars and instrument at random (part_span_tokens).
    None without two instruments in the bars."""
    ids = [int(t) for t in ids]
    layout = layout or _bars(tokenizer, ids)
    bars, _, end = layout
    if not bars or not tokenizer.infill:
        return None
    bar_end = bars[1:] + [end]
    n = rng.randint(1, min(max_bars, len(bars)))
    s = rng.randint(0, len(bars) - n)
    while n > 1 and bar_end[s + n - 1] - bars[s] > budget // 2:
        n -= 1
    return part_span_tokens(ids, tokenizer, s, n, lambda instruments: instruments[rng.randrange(len(instruments))],
                            budget, layout)


def part_span_tokens(ids: list[int], tokenizer, first: int, n: int, pick: Callable[[list], tuple], budget: int,
                     layout: tuple | None = None) -> list[int] | None:
    """The part-infill example of the n bars from the window's bar `first`, laid out by core.infill_layout:
    those bars without one instrument, Part, that instrument, Fill, the same bars with only its notes, EOS.
    `pick(instruments)` chooses the instrument among those of the bars (sorted); None with fewer than two
    there, or over `budget`."""
    bars, heads, end = layout or _bars(tokenizer, ids)
    bar_end = bars[1:] + [end]
    span = heads[bars[first]] + ids[bars[first] + 1:bar_end[first + n - 1]]
    dec = tokenizer.stream_decoder()
    dec.feed_many(span)
    score = dec.score()
    instruments = sorted({note.instrument for note in score.notes})
    if len(instruments) < 2:
        return None
    part = pick(instruments)
    end_tick = dec.grammar.bar_start + dec.grammar.bar_ticks
    from core.score import Score
    context = tokenizer.encode(Score([x for x in score.notes if x.instrument != part], score.tempos,
                                     score.time_signatures), eos=False, end_tick=end_tick)
    middle = tokenizer.encode(Score([x for x in score.notes if x.instrument == part], score.tempos,
                                    score.time_signatures), eos=True, end_tick=end_tick)
    if context.count(tokenizer.bar_id) != middle.count(tokenizer.bar_id):
        return None  # (not expected: both laid out over the same bars)
    seq = infill_layout.part_context(tokenizer, context, part) + infill_layout.middle(tokenizer, middle)
    return seq if len(seq) <= budget else None


def infill_tokens(ids: Sequence[int], tokenizer, rng, budget: int, part_share: float = 0.5) -> list[int] | None:
    """A part infill (with probability `part_share`, where the bars hold two instruments) or else a bar
    infill example from one valid sequence; None when neither can be made."""
    ids = [int(t) for t in ids]
    layout = _bars(tokenizer, ids)  # read once for either kind
    seq = part_infill_tokens(ids, tokenizer, rng, budget, layout=layout) if rng.random() < part_share else None
    return seq if seq is not None else bar_infill_tokens(ids, tokenizer, rng, budget, layout=layout)


def without_flat(ids: Sequence[int], tokenizer) -> list[int]:
    """The sequence without its Flat token (to measure what the dynamics flag is worth)."""
    return [int(t) for t in ids if t != tokenizer.flat_id]


# --- examples and batches ----------------------------------------------------------------------
class Example(NamedTuple):
    inputs: np.ndarray   # [T] int64
    targets: np.ndarray  # [T] int64; targets[i] is the token after inputs[i]
    mask: np.ndarray     # [T] float32; 1 where targets[i] is a real token that is scored


def padded_length(n: int, multiple: int = PAD_MULTIPLE) -> int:
    return max(multiple, math.ceil(n / multiple) * multiple)


def build_example(tokens: Sequence[int], ctx_len: int, loss_from: int = 0, pad_id: int = 0,
                  multiple: int = PAD_MULTIPLE) -> Example:
    """Inputs, targets and loss mask of one token list, built together so that they always align.

    At most ctx_len inputs are used (longer lists are cut at the end). `loss_from` is the index in
    `tokens` of the first token that is scored as a target (0 or 1: every token; the header length:
    the completion only). Padding never counts: an empty or one-token list gives an all-zero mask.
    """
    seq = np.asarray(tokens[: ctx_len + 1], dtype=np.int64)
    n = max(len(seq) - 1, 0)  # number of (input, target) pairs
    T = padded_length(n, multiple)
    inputs = np.full(T, pad_id, dtype=np.int64)
    targets = np.full(T, pad_id, dtype=np.int64)
    mask = np.zeros(T, dtype=np.float32)
    inputs[:n] = seq[:n]
    targets[:n] = seq[1:n + 1]
    mask[max(loss_from - 1, 0):n] = 1.0  # target i is token i+1
    return Example(inputs, targets, mask)


def collate(examples: Sequence[Example], pad_id: int = 0):
    """Stack examples into [B, T] tensors, T the longest padded length. Returns (inputs, targets, mask)."""
    import torch
    T = max(len(e.inputs) for e in examples)
    B = len(examples)
    inputs = np.full((B, T), pad_id, dtype=np.int64)
    targets = np.full((B, T), pad_id, dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.float32)
    for i, e in enumerate(examples):
        inputs[i, :len(e.inputs)] = e.inputs
        targets[i, :len(e.targets)] = e.targets
        mask[i, :len(e.mask)] = e.mask
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(mask)

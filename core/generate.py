"""Continuation: the prompt runs through the model in parallel form, then one recurrent step per token,
each sampled under the tokenizer's grammar, and every note is handed out the moment it is complete.

The continuation starts on a bar line of the prompt (the bar line at or after the requested tick), keeps
the prompt's tempo and meter (tempo and meter tokens are masked) and its instruments (unless the caller
names others), and stops after exactly N bars, N beats, or at EOS. K variations share one batched pass.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from .network.checkpoint import load_checkpoint
from .copying import copy_share, folder_phrases
from .memory import FolderMemory, MemoryMixer, PieceMemory
from .network.model import RWKV7, State
from .sampling import Lane, StepCounter, new_seed, run_lanes, sample_tokens, torch_threads
from .sampling_config import SamplingConfig
from .score import GM_PROGRAM_NAMES, TICKS_PER_BEAT, Note, Score
from .network.style import Style, StyledModel, load_style
from .tokenizer import STEP_TICKS, GrammarState, StreamDecoder, Tokenizer
from . import idiom, voices

DEFAULT_CTX = 1024
PREFILL_CACHE_SIZE = 4
MAX_MEMORY_FORKS = 8  # a piece memory extended more often than this is rebuilt (lookups read every fork)
TOKENS_PER_BAR_LIMIT = 400  # a runaway bar (a note flood) is cut here; the remaining bars stay empty


@dataclass(frozen=True)
class StreamedNote:
    variation: int
    note: Note  # absolute ticks of the prompt's document


def parse_instruments(specs: Iterable[str | int]) -> list[tuple[int, bool]]:
    """(program, drum) pairs from GM program numbers 0..127, GM names (or a unique part of one), "drums"."""
    out: list[tuple[int, bool]] = []
    for spec in specs:
        text = str(spec).strip()
        if text.lower() in ("drums", "drum", "percussion"):
            out.append((0, True))
            continue
        if text.isdigit():
            program = int(text)
            if not 0 <= program <= 127:
                raise ValueError(f"GM program {program} is outside 0..127")
            out.append((program, False))
            continue
        exact = [i for i, name in enumerate(GM_PROGRAM_NAMES) if name.lower() == text.lower()]
        partial = [i for i, name in enumerate(GM_PROGRAM_NAMES) if text.lower() in name.lower()]
        matches = exact or partial
        if len(matches) != 1:
            hint = ", ".join(GM_PROGRAM_NAMES[i] for i in matches[:5])
            raise ValueError(f"instrument {text!r} is {'ambiguous: ' + hint if matches else 'not a GM name'}")
        out.append((matches[0], False))
    return out


@dataclass
class _Window:
    """The prompt as the model sees it: at most ctx tokens, ending where the continuation starts. Its ticks
    are those of the prompt's token view (Score.token_view: the document's plus the view's shift)."""
    ids: list[int]
    start_tick: int  # tick (the view's) of the window's first bar
    continuation_tick: int  # the bar line where new notes begin (the view's)
    grammar: GrammarState  # after the last id: where sampling goes on


class Generator:
    """A model, its tokenizer and an optional style (core.network.style, at a strength), ready to continue Scores.

    `model` is the network; `styled` (a core.network.style.StyledModel over it) owns the applied style and runs the
    network with it: every prefill and step goes through `styled`. Given a StyledModel, the generator shares
    it (its style, if one is applied, steers, and its folder memory is mixed in)."""

    def __init__(self, model: RWKV7 | StyledModel, tokenizer: Tokenizer | None = None, *,
                 style: Style | torch.Tensor | None = None, strength: float = 1.0,
                 ctx: int = DEFAULT_CTX, threads: int | None = 1):
        self.styled = model if isinstance(model, StyledModel) else StyledModel(model)  # the base until set_style
        self.model = self.styled.model.eval()
        self.threads = threads
        self.tokenizer = tokenizer or Tokenizer()
        if self.tokenizer.vocab_size > self.model.config.vocab_size:
            raise ValueError(f"the model's vocabulary ({self.model.config.vocab_size}) is smaller than the "
                             f"tokenizer's ({self.tokenizer.vocab_size})")
        self.ctx = ctx
        self._prefill_cache: list[tuple] = []  # (window ids, logits, state), newest first
        self._memory_cache: tuple[tuple, PieceMemory] | None = None  # the last piece memory built
        # the style's folder, mixed in at every token
        self.folder_memory: FolderMemory | None = self.style.memory if self.style is not None else None
        self._folder_phrases: tuple | None = None  # (folder memory, its 8-note phrases) for the copy meter
        if style is not None:
            self.set_style(style, strength)
        # Masks on top of the grammar: the prompt's tempo and meter stay; with a length, EOS never cuts it short.
        self._keep_meter_and_tempo = np.ones(self.tokenizer.vocab_size, dtype=bool)
        for kind in ("tempo", "timesig", "bos", "pad", "flat", "gap", "part", "fill"):  # a plain continuation
            ids = self.tokenizer.ids_of_kind(kind)
            self._keep_meter_and_tempo[ids.start:ids.stop] = False
        self._no_eos = self._keep_meter_and_tempo.copy()
        self._no_eos[self.tokenizer.eos_id] = False

    @classmethod
    def load(cls, model_path: str, style_path: str | None = None, *, strength: float = 1.0, device: str = "cpu",
             ctx: int = DEFAULT_CTX, threads: int | None = 1) -> "Generator":
        model, meta = load_checkpoint(model_path, device=device)
        tokenizer = Tokenizer.from_dict(meta["tokenizer"]) if "tokenizer" in meta else Tokenizer()
        style = load_style(style_path, model) if style_path else None
        gen = cls(model, tokenizer, style=style, strength=strength, ctx=ctx, threads=threads)
        gen.styled.prepare_step()  # the first continuation should not wait for the step's set-up
        return gen

    @property
    def style(self) -> Style | None:
        """The applied style (None: the base model)."""
        return self.styled.style

    @property
    def strength(self) -> float:
        """The style's strength (0 = the base model, 1 = as trained)."""
        return self.styled.strength

    def set_style(self, style: Style | str | os.PathLike | torch.Tensor | None, strength: float = 1.0) -> None:
        """Steer the loaded model with a style (a Style, a style file's path, or a bare initial WKV state
        [L,H,N,N]) at `strength` (0 = the base model, 1 = as trained), or go back to the base (None). The base
        model is never reloaded. Not while a stream of this generator runs: its tokens would mix styles."""
        if isinstance(style, (str, os.PathLike)):
            style = load_style(os.fspath(style), self.styled)  # checked against the base, whatever is applied
        elif isinstance(style, torch.Tensor):
            style = Style(state=style.float())
        self.styled.apply(style, strength)  # checks the style fits this base model first
        self.folder_memory = style.memory if style is not None else None
        self._prefill_cache.clear()  # prefilled states were computed under the old style

    def copy_share(self, notes: list[Note], meter: Score) -> float | None:
        """The copy meter (core.copying) of generated notes against the style's folder: the share of their
        8-note phrases found in it. None without a folder memory or with too few notes."""
        if self.folder_memory is None:
            return None
        if self._folder_phrases is None or self._folder_phrases[0] is not self.folder_memory:
            self._folder_phrases = (self.folder_memory, folder_phrases(self.folder_memory.sequences, self.tokenizer))
        return copy_share(notes, meter, self._folder_phrases[1])

    def set_strength(self, strength: float) -> None:
        """The current style at another strength (no file read, no reload)."""
        self.set_style(self.style, strength)

    # --- the prompt ------------------------------------------------------------------------------
    def window(self, prompt: Score, at_tick: int | None = None) -> _Window:
        """Tokens of the prompt up to `at_tick` (default: its end), opened on the next bar line, cut at a Bar
        to at most ctx tokens (3/4 ctx when cut afresh) with the tokenizer's header (tempo and meter in force).

        Only the tail of a long prompt is encoded (the last 8, 16, 32... bars until ctx is filled), and
        where several cuts fit, the one that extends a window already prefilled is taken. `at_tick` is the
        document's; the window's ticks are the view's."""
        view = prompt.token_view()  # the pedal folded over the whole piece first
        return self.view_window(view, None if at_tick is None else view.from_document(max(0, int(at_tick))))

    def view_window(self, prompt: Score, at_tick: int | None = None) -> _Window:
        """`window` of a prompt that is already a token view (Score.token_view), `at_tick` in its ticks."""
        at_tick = prompt.end_tick if at_tick is None else max(0, int(at_tick))
        bar_lines = prompt.bar_starts(at_tick)
        n_bars = 8
        while True:
            first = bar_lines[-n_bars] if n_bars < len(bar_lines) else 0
            ids, grammar, bar_ticks = self._encode_tail(prompt, first, at_tick)
            if len(ids) > self.ctx or first == 0:
                break
            n_bars *= 2
        continuation_tick = first + grammar.bar_start
        if len(ids) <= self.ctx and first == 0:
            return _Window(ids, 0, continuation_tick, grammar)
        fitting = [(index, header) for index, header in self.tokenizer.bar_headers(ids)
                   if len(header) + len(ids) - index - 1 <= self.ctx or index == len(ids) - 1]
        # A fresh cut leaves a quarter of ctx free, so the next bars the user adds keep the same cut and
        # the prefilled state stays usable; a cut that extends a prefilled window wins while it fits.
        fresh_limit = self.ctx - self.ctx // 4
        index, header = next(((i, h) for i, h in fitting if len(h) + len(ids) - i - 1 <= fresh_limit), fitting[-1])
        for i, h in fitting:
            candidate = tuple(h + ids[i + 1:i + 1 + self.ctx])
            if any(candidate[:len(key)] == key for key, _, _ in self._prefill_cache):
                index, header = i, h  # its prefix is prefilled already: only the new tokens will run
                break
        window_ids = header + ids[index + 1:]
        grammar = self.tokenizer.grammar(window_ids)
        return _Window(window_ids, first + bar_ticks[index], continuation_tick, grammar)

    def _encode_tail(self, prompt: Score, first: int, at_tick: int):
        """Tokens of the prompt from bar line `first` to `at_tick`, the bar at or after `at_tick` opened;
        the grammar after them; the tick (from `first`) of each Bar token's bar, by token index."""
        tok = self.tokenizer
        ids = tok.encode(prompt.slice(first, at_tick), eos=False, end_tick=at_tick - first)
        g = tok.grammar()
        bar_ticks: dict[int, int] = {}
        for i, t in enumerate(ids):
            g.advance(t)
            if t == tok.bar_id:
                bar_ticks[i] = g.bar_start
        while g.bar_start < at_tick - first or g.bars == 0:  # open the bar the continuation starts on
            ids.append(tok.bar_id)
            g.advance(tok.bar_id)
            bar_ticks[len(ids) - 1] = g.bar_start
        return ids, g, bar_ticks

    # --- generation ------------------------------------------------------------------------------
    def stream(self, prompt: Score, *, bars: int | None = None, beats: float | None = None,
               at_tick: int | None = None, variations: int = 1, sampling: SamplingConfig | None = None,
               instruments: Iterable[tuple[int, bool]] | None = None,
               max_tokens: int | None = None) -> "ContinuationStream":
        """An iterator of StreamedNote, each yielded as soon as its tokens are sampled (see ContinuationStream).

        `instruments`: (program, drum) pairs the continuation may use; default: the prompt's instruments."""
        return ContinuationStream(self, prompt, bars=bars, beats=beats, at_tick=at_tick, variations=variations,
                                  sampling=sampling or SamplingConfig(), instruments=instruments,
                                  max_tokens=max_tokens)

    def generate(self, prompt: Score, **kwargs) -> list[Score]:
        """One Score per variation: the prompt up to the continuation point, then the continuation."""
        stream = self.stream(prompt, **kwargs)
        notes: list[list[Note]] = [[] for _ in range(stream.variations)]
        for item in stream:
            notes[item.variation].append(item.note)
        return [stream.score(v_notes) for v_notes in notes]

    def warm(self, prompt: Score, at_tick: int | None = None) -> None:
        """Prefill the prompt now (e.g. in a worker while the user edits) so that a later Continue from it,
        or from it plus a few more bars, only runs the tokens that are new."""
        self._prefill(self.window(prompt, at_tick).ids)

    def _prefill(self, ids: list[int]) -> tuple[torch.Tensor, State]:
        """Logits after the last id and the state to step from. Reuses the longest cached window that is a
        prefix of `ids` (Regenerate, or Continue after accepting a continuation) and runs only the rest."""
        key = tuple(ids)
        best = max((entry for entry in self._prefill_cache if key[:len(entry[0])] == entry[0]),
                   key=lambda entry: len(entry[0]), default=None)
        if best is not None and len(best[0]) == len(key):
            return best[1], best[2]
        device = self.model.emb.weight.device
        if best is not None:
            state, rest = best[2], ids[len(best[0]):]
        else:
            state = None  # the zero state, or an applied style's initial state (StyledModel.prefill's)
            rest = ids
        with torch_threads(self.threads):
            logits, state = self.styled.prefill(torch.tensor([rest], dtype=torch.long, device=device), state)
        # step() never changes the state it is given, so cached states stay valid.
        self._prefill_cache = [(key, logits, state)] + self._prefill_cache[:PREFILL_CACHE_SIZE - 1]
        return logits, state

    def memory(self, piece_ids: list[int], strength: float) -> MemoryMixer | None:
        """The memories of streams that have read `piece_ids` (the piece so far, from its start): None at
        strength 0. It is shared: fork it for each stream, so that variations never see each other's tokens.
        The last piece memory is kept, and a piece that extends it only counts its new tokens."""
        if strength <= 0:
            return None
        key = tuple(piece_ids)
        cached = self._memory_cache
        if cached is not None and key[:len(cached[0])] == cached[0] and cached[1].depth < MAX_MEMORY_FORKS:
            piece = cached[1].fork() if len(key) > len(cached[0]) else cached[1]
            piece.extend(key[len(cached[0]):])
        else:
            piece = PieceMemory(key)
        self._memory_cache = (key, piece)
        return MemoryMixer(piece, self.folder_memory, strength)


class _ContinuationLane(Lane):
    """One variation of a continuation: it samples under the grammar (the prompt's tempo and meter kept,
    EOS only without a length) and stops at EOS, at the first token past the requested end, or at the
    token limit; the stopping token is not taken."""

    def __init__(self, stream: "ContinuationStream", index: int, keep: np.ndarray, memory: MemoryMixer | None):
        self.stream, self.index, self.keep, self.memory = stream, index, keep, memory
        self.decoder = stream._new_decoder()
        self.tokens: list[int] = []
        self.done = False
        self.reason = ""  # why it stopped: "bars", "beats", "eos", "tokens", "closed"

    def allowed(self) -> np.ndarray:
        return self.decoder.grammar.allowed() & self.keep

    def take(self, t: int, forced: bool) -> tuple[list, str]:
        reason = self.stream._stop_reason(self, t)
        if reason:
            self.done, self.reason = True, reason
            return [], reason
        self.tokens.append(t)
        notes = [self.stream._emit(self.index, note) for note in self.decoder.feed(t)]
        if len(self.tokens) >= self.stream.max_tokens:
            self.done, self.reason = True, "tokens"
        return notes, self.reason


class NoteStream:
    """A stream of StreamedNote: its `_run` generator starts at the first next() and `close()` stops it."""
    _iterator: Iterator[StreamedNote] | None = None

    def __iter__(self):
        return self

    def __next__(self) -> StreamedNote:
        if self._iterator is None:
            self._iterator = self._run()
        return next(self._iterator)

    def close(self) -> None:
        if self._iterator is not None:
            self._iterator.close()

    def _run(self) -> Iterator[StreamedNote]:
        raise NotImplementedError


class ContinuationStream(NoteStream, StepCounter):
    """Iterating yields StreamedNote in sampling order (per variation, note starts never go back).

    Known before iterating: `start_tick` (the bar line the continuation starts on), `end_tick` (where the
    N bars / beats end, None without a limit), `variations`. After: `tokens[v]` (sampled ids), `reasons[v]`,
    `prefill_seconds`, `steps`, `step_seconds`. `close()` stops it (also when the consumer breaks off).

    The model works in the prompt's token view (`view`), whose ticks may lie `view.view_shift` after the
    document's (core.meter); the requested tick, `start_tick`, `end_tick` and the notes yielded are the
    document's, mapped by the view (Score.from_document / to_document).
    """

    def __init__(self, gen: Generator, prompt: Score, *, bars, beats, at_tick, variations, sampling,
                 instruments, max_tokens):
        if variations < 1:
            raise ValueError("variations must be at least 1")
        if bars is not None and bars < 1 or beats is not None and beats <= 0:
            raise ValueError("bars and beats must be positive")
        self.gen = gen
        self.prompt = prompt
        self.variations = variations
        self.sampling = sampling
        self.requested_tick = prompt.end_tick if at_tick is None else max(0, int(at_tick))
        self.view = prompt.token_view()  # once: the window, the chord caps and the piece memory read it
        view = self.view
        self._view_request = view.from_document(self.requested_tick)
        self.window = gen.view_window(view, self._view_request)
        # The window opens on a bar line of the view at or after the request, so never before the document.
        self._view_start = self.window.continuation_tick
        self.start_tick = view.to_document(self._view_start)
        bar_ticks = prompt.time_signature_at(self.start_tick).bar_ticks
        ends = []
        if bars is not None:
            ends.append(self.start_tick + bars * bar_ticks)
        if beats is not None:
            ends.append(self.start_tick + round(beats * TICKS_PER_BEAT))
        self.end_tick = min(ends) if ends else None
        self._view_end = None if self.end_tick is None else view.from_document(self.end_tick)
        self.bars = bars
        before = [n for n in view.notes if n.start < self._view_request]
        if instruments is None:
            instruments = {n.instrument for n in before} or None
        self.instruments = None if instruments is None else sorted(set(instruments))
        # the prompt's texture: each instrument starts at most as many notes at once as in its last bars
        self.chord_caps = idiom.chord_caps(before, self._view_start, instruments=self.instruments or ())
        self.grid = idiom.onset_grid(before, view.bar_starts(self._view_start), self._view_start) \
            if sampling.grid else None
        limit_bars = bars if bars is not None else (int(beats // 1) + 4 if beats is not None else 64)
        self.max_tokens = max_tokens or TOKENS_PER_BAR_LIMIT * limit_bars
        self.prefill_seconds = 0.0
        self._vars: list[_ContinuationLane] = []

    @property
    def tokens(self) -> list[list[int]]:
        return [v.tokens for v in self._vars]

    @property
    def reasons(self) -> list[str]:
        return [v.reason for v in self._vars]

    def close(self) -> None:
        super().close()
        for v in self._vars:
            if not v.done:
                v.done, v.reason = True, "closed"

    def score(self, notes: list[Note]) -> Score:
        """The prompt up to the continuation point (its tracks and their events) plus `notes`, each in the
        track whose part it continues (core.voices; a new track of its instrument if the prompt has none),
        with the prompt's tempo map and meter."""
        piece = self.prompt.slice(0, self.requested_tick)
        tracks = [t.notes for t in piece.tracks(include_empty=True)]
        piece.add_notes(voices.placed(tracks, notes, self.start_tick))
        return piece

    # -- the sampling loop
    def _new_decoder(self) -> StreamDecoder:
        dec = self.gen.tokenizer.stream_decoder()
        dec.grammar = self.window.grammar.copy()  # the decoder goes on from the end of the window
        dec.grammar.playable = True  # every note within its instrument's range
        if self.instruments is not None:
            dec.grammar.restrict_instruments(self.instruments)
        dec.grammar.limit_onsets(self.chord_caps)
        dec.grammar.limit_grid(self.grid)
        return dec

    def _stop_reason(self, v: _ContinuationLane, t: int) -> str:
        """Why token t ends variation v ("" if it does not): EOS, or the first token past the limit."""
        tok, g = self.gen.tokenizer, v.decoder.grammar
        if t == tok.eos_id:
            return "eos"
        if self._view_end is None:
            return ""
        end_rel = self._view_end - self.window.start_tick
        kind = tok.kind(t)
        if kind == "bar" and g.bar_start + g.bar_ticks >= end_rel:
            return "bars" if self.bars is not None else "beats"
        if kind == "pos" and g.bar_start + tok.value(t) * STEP_TICKS >= end_rel:
            return "beats"
        return ""

    def _emit(self, v: int, note: Note) -> StreamedNote:
        """A decoded note (ticks from the window's start) as the document's note."""
        start = note.start + self.window.start_tick
        duration = note.duration
        if self._view_end is not None:
            duration = max(1, min(duration, self._view_end - start))  # the continuation ends at its last bar line
        view_note = Note(start, duration, note.pitch, note.velocity, note.program, note.drum)
        return StreamedNote(v, self.view.note_to_document(view_note))

    def _piece_ids(self) -> list[int]:
        """The piece up to the continuation point, from its first bar (the window may start later)."""
        if self.window.start_tick == 0:
            return self.window.ids
        return self.gen._encode_tail(self.view, 0, self._view_request)[0]

    def _run(self) -> Iterator[StreamedNote]:
        gen, cfg = self.gen, self.sampling
        keep = gen._no_eos if self.end_tick is not None else gen._keep_meter_and_tempo
        memory = gen.memory(self._piece_ids(), cfg.memory)
        self._vars = [_ContinuationLane(self, v, keep, memory.fork() if memory else None)
                      for v in range(self.variations)]
        t0 = time.perf_counter()
        logits, state = gen._prefill(self.window.ids)
        self.prefill_seconds = time.perf_counter() - t0
        rng = torch.Generator(device=logits.device).manual_seed(new_seed(cfg))  # samples where the logits are
        if self.variations > 1:
            state = state.repeat(self.variations)
            logits = logits.expand(self.variations, -1)
        try:
            yield from run_lanes(gen, self._vars, logits, state, cfg, rng, self)
        finally:
            for var in self._vars:
                if not var.done:
                    var.done, var.reason = True, "closed"


def generate(model_path: str, prompt: Score, *, style_path: str | None = None, strength: float = 1.0,
             **kwargs) -> list[Score]:
    """Convenience: load a checkpoint (and style) and continue `prompt` (see Generator.stream)."""
    return Generator.load(model_path, style_path, strength=strength).generate(prompt, **kwargs)


__all__ = ["Generator", "NoteStream", "ContinuationStream", "SamplingConfig", "StreamedNote", "generate",
           "parse_instruments", "sample_tokens"]

"""Infill: regenerate a bar range, or add a part, through the recurrent state.

The context is read once (prefill), then the middle streams note by note under the grammar, with the
sampler, masks and batched variations of continuation (core.generate). The prompt is laid out by
core.infill_layout, which lays out the infill examples of training too (tokenizer v2):

    bars:  <before> Gap_k  Tempo Bar TimeSig <after>  Fill Tempo Bar TimeSig | <k bars, sampled>  EOS
    part:  <the bars, without p>  Part Program_p  Fill Tempo Bar TimeSig | <the same bars, p only>  EOS

What the user keeps inside the range (locked notes, and in a bar range the notes of instruments that are
not regenerated; in a part, the notes that instrument already has) is teacher-forced: the model samples
freely until its stream reaches the onset of a kept note (it may not skip past it), then that onset's
tokens are forced, and the model goes on around them. Tempo and meter changes inside the range are forced
the same way, and never sampled, so the middle keeps the piece's tempo map and meter.

Nothing outside the range changes, and in a part no existing note changes: the result is the user's
Score (tracks, events) with only the regenerated notes removed and the new ones added.

A range longer than MAX_GAP_BARS bars is done in chunks, each one a prompt of its own: a bar chunk reads
the chunks before it as already regenerated (so each variation prefills its own prompt after the first
chunk) and the original bars after it; a part chunk starts PART_OVERLAP_BARS bars early, with those bars
of the new part given (written into its prompt), so the part goes on where the last chunk left it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch

from .generate import TOKENS_PER_BAR_LIMIT, Generator, NoteStream, SamplingConfig, StreamedNote
from .network.model import State
from .sampling import Lane, StepCounter, new_seed, run_lanes
from .score import GM_PROGRAM_NAMES, TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature, Track
from . import idiom, infill_layout, voices
from .tokenizer import MAX_BAR_QUARTERS, MAX_GAP_BARS, GrammarState, StreamDecoder, velocity_level

BEFORE_BARS = 16  # at most this many bars before a bar range are read (fewer where the budget is short)
AFTER_BARS = 8  # ... and after it
PART_OVERLAP_BARS = 4  # a part chunk restates this many bars of the part the chunk before it wrote


def token_bar_lines(score: Score, tokenizer, bars: int = 0, until: int = 0) -> list[int]:
    """Ticks of the bar lines as the tokenizer lays bars out (a meter it does not have, or a change inside
    a bar, can make them differ from `Score.bar_starts`): at least `bars` bars and up to `until`, with the
    end of the last bar as the last line."""
    end = max(int(until), bars * MAX_BAR_QUARTERS * TICKS_PER_BEAT, 1)
    ids = tokenizer.encode(Score((), list(score.tempos), list(score.time_signatures)), eos=False, end_tick=end)
    g = tokenizer.grammar()
    lines = []
    for t in ids:
        g.advance(t)
        if t == tokenizer.bar_id:
            lines.append(g.bar_start)
    lines.append(g.bar_start + g.bar_ticks)
    return lines


def bar_range(score: Score, tokenizer, first: int, last: int) -> tuple[int, int]:
    """Ticks [start, end) of bars `first`..`last` (1-based, inclusive)."""
    if first < 1 or last < first:
        raise ValueError(f"bars {first}-{last}: give a range of bars from 1, first <= last")
    lines = token_bar_lines(score, tokenizer, bars=last)
    return lines[first - 1], lines[last]


def parse_bar_range(text: str) -> tuple[int, int]:
    """'5-8' -> (5, 8); '5' -> (5, 5). Bars count from 1."""
    parts = str(text).replace(" ", "").split("-")
    try:
        if len(parts) == 1:
            first = last = int(parts[0])
        elif len(parts) == 2:
            first, last = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"bars {text!r}: write a range as FIRST-LAST, e.g. 5-8 (bars count from 1)") from None
    if first < 1 or last < first:
        raise ValueError(f"bars {text!r}: bars count from 1 and the range must not run backwards")
    return first, last


def _key(n: Note) -> tuple:
    """What identifies a note across the document and the tokenizer's view (which may lengthen it), once a
    note of the document is placed in the view (Score.note_from_document: the view may move it later)."""
    return (n.start, n.pitch, n.instrument)


def _span(notes: Iterable[Note], view: Score, a: int, b: int) -> Score:
    """The notes starting in [a, b), shifted to start at a, with the tempo map and meter of `view` there."""
    tempos = [TempoChange(0, view.tempo_at(a))] + [TempoChange(t.tick - a, t.bpm) for t in view.tempos
                                                    if a < t.tick < b]
    ts = view.time_signature_at(a)
    meters = [TimeSignature(0, ts.numerator, ts.denominator)] + [
        TimeSignature(t.tick - a, t.numerator, t.denominator) for t in view.time_signatures if a < t.tick < b]
    return Score([Note(n.start - a, n.duration, n.pitch, n.velocity, n.program, n.drum) for n in notes
                  if a <= n.start < b], tempos, meters)


@dataclass
class _Onset:
    bar: int  # 1-based bar of the middle
    pos: int  # grid step in the bar
    tempo: int | None  # a Tempo token forced after the Pos
    notes: list  # (instrument, velocity level, pitch, Dur token) in the encoder's order


@dataclass
class _Middle:
    """The middle of one chunk as far as it is known: its header and given bars (prompt tokens), then
    what must be forced in the bars the model writes: meter changes by bar, and onsets of kept notes."""
    prompt: list[int]
    bars: int  # all bars of the middle
    given: int  # bars written into the prompt (a part chunk's overlap)
    meters: dict[int, int] = field(default_factory=dict)  # bar -> TimeSig token
    onsets: list[_Onset] = field(default_factory=list)


def _middle(tok, score: Score, length: int, given: int) -> _Middle:
    """`score` (kept notes of the chunk, from its start) as a middle: its prompt (core.infill_layout.middle:
    Fill, the restated header, the first `given` bars whole); the rest becomes the schedule of forced tokens."""
    ids = tok.encode(score, eos=False, end_tick=length)
    g = GrammarState(tok)
    out = _Middle([], ids.count(tok.bar_id), given)
    known, onset = 0, None  # known: how many of `ids` the prompt holds (BOS to the first bar's header, given bars)
    for i, t in enumerate(ids):
        g.advance(t)
        kind = tok.kind(t)
        if g.bars <= given or (g.bars == 1 and kind in ("tempo", "bar", "timesig") and onset is None):
            known = i + 1
            continue
        if kind == "timesig":
            out.meters[g.bars] = t
        elif kind == "pos":
            onset = _Onset(g.bars, g.pos, None, [])
            out.onsets.append(onset)
        elif kind == "tempo":
            onset.tempo = t
        elif kind == "duration":
            onset.notes.append((g.instrument, g.velocity, g.pitch, t))
    out.prompt = infill_layout.middle(tok, ids[:known])
    return out


class _Forcing:
    """One variation's forced tokens: the schedule of a chunk's middle and the tokens queued right now."""

    def __init__(self, tok, middle: _Middle):
        self.tok = tok
        self.meters = dict(middle.meters)
        self.onsets = list(middle.onsets)
        self.queue: list = []  # ("tok", id) or ("note", instrument, level, pitch, dur, stage)

    def next_token(self, g: GrammarState) -> int | None:
        """The token to force now, or None when the model samples."""
        tok = self.tok
        while self.queue:
            item = self.queue[0]
            if item[0] == "tok":
                self.queue.pop(0)
                return item[1]
            _, instrument, level, pitch, dur, stage = item
            if stage == 0:
                item[5] = 1
                if g.instrument != instrument:
                    return tok.instrument_id(*instrument)
                stage = 1
            if stage == 1:
                item[5] = 2
                if g.velocity != level:
                    return tok.ids_of_kind("velocity")[level]
                stage = 2
            if stage == 2:
                item[5] = 3
                return tok.pitch_id(pitch)
            self.queue.pop(0)
            return dur
        return None

    def restrict(self, g: GrammarState, mask: np.ndarray) -> np.ndarray:
        """The sampling mask, kept from passing the next kept onset: in its bar, no Bar, EOS or later Pos."""
        if not self.onsets:
            return mask
        bar = g.fill_bars - g.fill_left
        first = self.onsets[0]
        if bar < first.bar:
            return mask
        mask = mask.copy()
        tok = self.tok
        mask[tok.bar_id] = mask[tok.eos_id] = False
        pos = tok.ids_of_kind("pos")
        mask[pos.start + first.pos + 1:pos.stop] = False
        return mask

    def fed(self, g: GrammarState, t: int) -> None:
        """Queue what the token just fed calls for (after a Bar its meter; at a kept onset its tokens)."""
        kind = self.tok.kind(t)
        bar = g.fill_bars - g.fill_left
        if kind == "bar" and bar in self.meters:
            self.queue.append(("tok", self.meters.pop(bar)))
        elif kind == "pos" and self.onsets and (self.onsets[0].bar, self.onsets[0].pos) == (bar, g.pos):
            onset = self.onsets.pop(0)
            if onset.tempo is not None:
                self.queue.append(("tok", onset.tempo))
            self.queue += [["note", inst, level, pitch, dur, 0] for inst, level, pitch, dur in onset.notes]


def _force(dec: StreamDecoder, t: int) -> list[Note]:
    """Feed a forced token: a kept note may lie outside the instruments or the playable range that bind
    the model's own notes."""
    g = dec.grammar
    with g.unrestricted():
        if not g.accepts(t):
            raise AssertionError(f"forced token {g.tok.token_name(t)} is not valid here")
        return dec.feed(t)


def _restruck(notes: list[Note]) -> list[Note]:
    """A new note that sounds on when its key is struck again ends there: one instrument plays a key once
    at a time (a file would otherwise need extra tracks to hold both)."""
    by_key: dict[tuple, list[Note]] = {}
    for n in notes:
        by_key.setdefault((n.instrument, n.pitch), []).append(n)
    for same in by_key.values():
        same.sort(key=lambda n: n.start)
        for n, after in zip(same, same[1:]):
            if n.start < after.start < n.end:
                n.duration = after.start - n.start
    return notes


@dataclass
class Chunk:
    """One prompt's worth of the range: at most MAX_GAP_BARS bars in its middle (ticks of the token view)."""
    start: int  # first tick the chunk regenerates (a bar line)
    end: int  # its end (a bar line)
    bars: int  # bars it regenerates
    given: int = 0  # a part chunk: bars before `start` whose part is given in its prompt (the overlap)
    context_start: int = 0  # a part chunk: tick of its context's first bar (start less the given bars)


@dataclass
class _Variation:
    notes: list[Note] = field(default_factory=list)  # generated notes, absolute ticks of the token view
    tokens: list[list[int]] = field(default_factory=list)  # per chunk: the middle after the prompt
    prompts: list[list[int]] = field(default_factory=list)  # per chunk
    reasons: list[str] = field(default_factory=list)  # per chunk: "eos", "tokens", "closed"


class InfillStream(NoteStream, StepCounter):
    """Iterating yields StreamedNote (absolute ticks in the piece) as each generated note is complete; per
    variation, note starts never go back. Kept notes are not yielded (they are in the piece already).

    Known before iterating: `start_tick`, `end_tick` (bar lines), `variations`, `chunks`, `instruments`
    (what the model may write; None: any), `part`. After: `tokens[v][c]`, `prompts[v][c]`, `reasons[v][c]`,
    `prefill_seconds`, `steps`, `step_seconds`, `first_note_seconds`. `close()` stops it. `score(notes)`
    is the piece with a variation's notes in place (a new note re-struck while it sounds ends there).

    The model works in the piece's token view (`view`, core.meter), whose ticks may lie `view.view_shift`
    after the document's: `lines` and `chunks` are the view's; `start_tick`, `end_tick`, the notes yielded,
    `locked`, `replaces` and `score` are the document's (mapped by Score.from_document / to_document)."""

    def __init__(self, gen: Generator, score: Score, start_tick: int, end_tick: int, *, part=None,
                 variations: int = 1, sampling: SamplingConfig | None = None, instruments=None, locked=(),
                 context_tokens: int | None = None, max_tokens_per_bar: int = TOKENS_PER_BAR_LIMIT):
        tok = gen.tokenizer
        if not tok.infill:
            raise ValueError(f"this model was made with tokenizer {tok.VERSION}, which has no infill tokens: "
                             f"regenerating bars or adding a part needs a model trained with infill examples "
                             f"(tokenizer rwkvmusic-tok-2 or later)")
        if variations < 1:
            raise ValueError("variations must be at least 1")
        self.gen, self.tok = gen, tok
        self.document = score
        self.view = score.token_view()
        self.notes = self.view.notes  # computed on each access: once here
        self.variations = variations
        self.sampling = sampling or SamplingConfig()
        self.context_tokens = context_tokens or gen.ctx // 2  # training gives the middle at most half
        self.max_tokens_per_bar = max_tokens_per_bar
        if int(end_tick) <= max(int(start_tick), 0):
            raise ValueError(f"the range from tick {start_tick} to {end_tick} is empty")
        view = self.view
        view_start, view_end = view.from_document(max(int(start_tick), 0)), view.from_document(int(end_tick))
        lines = token_bar_lines(view, tok, until=max(view_end, view.end_tick) + 1)
        start = max(line for line in lines if line <= view_start)  # widened to the model's bar lines
        end = min(line for line in lines if line >= view_end)
        self.lines, self._start, self._end = lines, start, end
        self.start_tick, self.end_tick = view.to_document(start), view.to_document(end)
        self.part = None if part is None else ((0, True) if part[1] else (int(part[0]), False))
        in_range = [n for n in self.notes if start <= n.start < end]
        locked_keys = {_key(view.note_from_document(n)) for n in locked}
        if self.part is not None:
            self.instruments = [self.part]
        elif instruments is not None:
            self.instruments = sorted({(0, True) if d else (int(p), False) for p, d in instruments})
            if not self.instruments:
                raise ValueError("instruments must not be empty")
        else:  # those of the range, else of the piece; none: any
            self.instruments = sorted({n.instrument for n in in_range} or {n.instrument for n in self.notes}) \
                or None
        regenerated = None if self.instruments is None else set(self.instruments)

        def replaced(n: Note) -> bool:  # n: a note of the view
            return (self.part is None and start <= n.start < end and _key(n) not in locked_keys
                    and (regenerated is None or n.instrument in regenerated))

        self._replaced = replaced
        self.kept = [n for n in self.notes if not replaced(n)]  # the tokenizer's view of what stays
        self.chunks = self._plan()
        self.prefill_seconds = 0.0
        self.first_note_seconds: float | None = None
        self._vars = [_Variation() for _ in range(variations)]

    # --- results -------------------------------------------------------------------------------
    @property
    def prompt(self) -> list[int]:
        """The first chunk's prompt (every variation's: later chunks read what each variation wrote)."""
        return self._prompt(self.chunks[0], _Variation())[0]

    @property
    def tokens(self) -> list[list[list[int]]]:
        return [v.tokens for v in self._vars]

    @property
    def prompts(self) -> list[list[list[int]]]:
        return [v.prompts for v in self._vars]

    @property
    def reasons(self) -> list[list[str]]:
        return [v.reasons for v in self._vars]

    def replaces(self, note: Note) -> bool:
        """Whether `note` of the document (matched by start, pitch and instrument) gives way to a variation's
        notes: it starts in the range, is not locked, and is of an instrument the model writes there. A part
        replaces nothing."""
        return self._replaced(self.view.note_from_document(note))

    @property
    def bar_numbers(self) -> tuple[int, int]:
        """The range's first and last bar (from 1) as the model counts them (its bar lines, `lines`)."""
        return self.lines.index(self._start) + 1, self.lines.index(self._end)

    def score(self, notes: Iterable[Note]) -> Score:
        """The document with `notes` in the range: in a bar range the replaced notes go and each new one joins
        the track whose part it continues (core.voices: register, voice leading and polyphony of the tracks
        around the range); a part is a new track. Every other track, note and event is the document's own."""
        piece = self.document.copy()
        notes = _restruck([Note(n.start, n.duration, n.pitch, n.velocity, n.program, n.drum) for n in notes])
        if self.part is not None:
            notes = idiom.shape_part(notes, self.part)  # a bass line: each note ends where the next begins
            program, drum = self.part
            name = "Drums" if drum else GM_PROGRAM_NAMES[program]
            tracks = piece.tracks(include_empty=True) + [Track(name, None, program, drum, notes)]
            return Score((), list(piece.tempos), list(piece.time_signatures), tracks=tracks)
        tracks = piece.tracks(include_empty=True)
        for t in tracks:
            t.notes[:] = [n for n in t.notes if not self.replaces(n)]
        piece.add_notes(voices.placed([t.notes for t in tracks], notes, self.start_tick, self.end_tick))
        return piece

    def generate(self) -> list[Score]:
        """Run to the end: one Score per variation."""
        notes: list[list[Note]] = [[] for _ in range(self.variations)]
        for item in self:
            notes[item.variation].append(item.note)
        return [self.score(v) for v in notes]

    # --- prompts -------------------------------------------------------------------------------
    def _plan(self) -> list[Chunk]:
        lines = self.lines
        first, last = lines.index(self._start), lines.index(self._end)
        total = last - first
        chunks = []
        if self.part is None:  # chunks of about equal length
            n = -(-total // MAX_GAP_BARS)
            edges = [first + round(i * total / n) for i in range(n + 1)]
            return [Chunk(lines[a], lines[b], b - a) for a, b in zip(edges, edges[1:])]
        a = first
        while a < last:
            given = min(PART_OVERLAP_BARS, a - first)
            n = min(MAX_GAP_BARS - given, last - a)
            while n > 1 and len(self._part_context(lines[a - given], lines[a + n])) > self.context_tokens:
                n -= 1  # the other parts of these bars are too long for the budget: a shorter chunk
            chunks.append(Chunk(lines[a], lines[a + n], n, given, lines[a - given]))
            a += n
        return chunks

    def _part_context(self, a: int, b: int) -> list[int]:
        notes = [n for n in self.notes if n.instrument != self.part]
        return self.tok.encode(_span(notes, self.view, a, b), eos=False, end_tick=b - a)

    def _flat(self, ids: list[int]) -> list[int]:
        """The piece's Flat flag (one velocity throughout) after BOS, as training windows carry it."""
        tok = self.tok
        ids = [t for t in ids if t != tok.flat_id]
        if len({velocity_level(n.velocity) for n in self.notes}) == 1:
            ids.insert(1, tok.flat_id)
        return ids

    def _bar_context(self, chunk: Chunk, before_notes: list[Note]) -> list[int]:
        """before + Gap_k + after (core.infill_layout), within the context budget (the bar furthest from the
        gap is left out first, as in training)."""
        tok, view, lines = self.tok, self.view, self.lines
        s, e = lines.index(chunk.start), lines.index(chunk.end)
        b0 = lines[max(0, s - BEFORE_BARS)]
        opening = self._flat([tok.bos_id, tok.tempo_id(view.tempo_at(chunk.start))])  # BOS [Flat] Tempo
        if chunk.start > b0:
            before = self._flat(tok.encode(_span(before_notes, view, b0, chunk.start), eos=False,
                                           end_tick=chunk.start - b0))
        else:  # the gap starts the piece: before it, what a piece starts with
            before = opening
        last_onset = max((n.start for n in self.notes), default=-1)
        a_end = e
        while a_end < min(e + AFTER_BARS, len(lines) - 1) and lines[a_end] <= last_onset:
            a_end += 1
        after = tok.encode(_span(self.notes, view, chunk.end, lines[a_end]), eos=False,
                           end_tick=lines[a_end] - chunk.end) if a_end > e else []
        gap = infill_layout.bar_gap(tok, chunk.bars, before, tok.bar_headers(before), opening, after)
        return gap.fitted(lambda context: len(context) <= self.context_tokens)

    def _prompt(self, chunk: Chunk, var: _Variation) -> tuple[list[int], _Middle]:
        tok, view = self.tok, self.view
        if self.part is None:
            kept = [n for n in self.kept if chunk.start <= n.start < chunk.end]
            middle = _middle(tok, _span(kept, view, chunk.start, chunk.end), chunk.end - chunk.start, 0)
            before = [n for n in self.kept if n.start < chunk.start] + var.notes
            context = self._bar_context(chunk, before)
        else:
            a = chunk.context_start
            given = [n for n in self.notes if n.instrument == self.part and a <= n.start < chunk.end]
            given += [n for n in var.notes if n.start >= a]  # the part's overlap bars, as the last chunk wrote them
            middle = _middle(tok, _span(given, view, a, chunk.end), chunk.end - a, chunk.given)
            context = infill_layout.part_context(tok, self._part_context(a, chunk.end), self.part)
        return context + middle.prompt, middle

    # --- the sampling loop ---------------------------------------------------------------------
    def _run(self) -> Iterator[StreamedNote]:
        cfg = self.sampling
        seed = new_seed(cfg)
        rng = None
        self._t_start = time.perf_counter()
        try:
            for chunk in self.chunks:
                prompts, middles = self._start_chunk(chunk)
                logits, state = self._prefill_rows(prompts)
                if rng is None:  # multinomial samples where the logits are
                    rng = torch.Generator(device=logits.device).manual_seed(seed)
                lanes = self._lanes(chunk, prompts, middles)
                yield from run_lanes(self.gen, lanes, logits, state, cfg, rng, self)
        finally:
            for var in self._vars:  # a chunk left unfinished was closed
                var.reasons[:] = [r or "closed" for r in var.reasons]

    def _start_chunk(self, chunk: Chunk) -> tuple[list[list[int]], list[_Middle]]:
        """Each variation's prompt for `chunk` and what its middle forces; the chunk is recorded in every
        variation (its prompt, no tokens yet, no reason yet)."""
        prompts, middles = [], []
        for var in self._vars:
            ids, middle = self._prompt(chunk, var)
            var.prompts.append(ids)
            var.tokens.append([])
            var.reasons.append("")
            prompts.append(ids)
            middles.append(middle)
        return prompts, middles

    def _prefill_rows(self, prompts: list[list[int]]) -> tuple[torch.Tensor, State]:
        """Logits and state with a batch row per variation: one prefill for each distinct prompt."""
        gen = self.gen
        t0 = time.perf_counter()
        distinct: dict[tuple, tuple] = {}
        for ids in prompts:
            if tuple(ids) not in distinct:
                distinct[tuple(ids)] = gen._prefill(ids)
        rows_of = [distinct[tuple(ids)] for ids in prompts]
        if len(distinct) == 1:  # one prefill for every variation
            logits, state = rows_of[0]
            if self.variations > 1:
                state = state.repeat(self.variations)
                logits = logits.expand(self.variations, -1)
        else:
            logits = torch.cat([r[0] for r in rows_of])
            state = State.cat([r[1] for r in rows_of])
        self.prefill_seconds += time.perf_counter() - t0
        return logits, state

    def _lanes(self, chunk: Chunk, prompts: list[list[int]], middles: list[_Middle]) -> list["_InfillLane"]:
        """Per variation, the lane that writes its middle of `chunk`: the decoder after its prompt, the
        forcing of its kept notes, the tick where the decoder puts the middle, its memory of the prompt."""
        lanes = []
        origin = chunk.context_start if self.part is not None else chunk.start
        caps, ranges = idiom.part_limits(self.part) if self.part is not None else (None, None)  # (core.idiom)
        # regenerated bars keep to the grid of the bars around them; a new part's rhythm is its own
        grid = idiom.onset_grid(self.kept, self.lines, chunk.start, chunk.end) \
            if self.sampling.grid and self.part is None else None
        for v, (ids, middle) in enumerate(zip(prompts, middles)):
            dec = self.tok.stream_decoder()
            dec.grammar = self.tok.grammar(ids, instruments=self.instruments, playable=True)
            dec.grammar.limit_onsets(caps, ranges)
            dec.grammar.limit_grid(grid)
            memory = self.gen.memory(ids, self.sampling.memory)
            lanes.append(_InfillLane(self, v, dec, _Forcing(self.tok, middle), origin - dec.grammar.gap_tick,
                                     self.max_tokens_per_bar * chunk.bars, memory.fork() if memory else None))
        return lanes

    def _emit(self, v: int, note: Note, origin: int) -> StreamedNote:
        """A sampled note of variation v, cut at the range's end: kept in the variation in the view's ticks
        (later chunks read it), yielded in the document's."""
        start = note.start + origin
        note = Note(start, max(1, min(note.duration, self._end - start)), note.pitch, note.velocity,
                    note.program, note.drum)
        self._vars[v].notes.append(note)
        if self.first_note_seconds is None:
            self.first_note_seconds = time.perf_counter() - self._t_start
        return StreamedNote(v, self.view.note_to_document(note))


class _InfillLane(Lane):
    """One variation's middle of one chunk: kept notes are forced at their onsets, the rest is sampled
    under the grammar, the forcing's limits and the kept tempo and meter, until EOS or the token limit."""

    def __init__(self, stream: InfillStream, index: int, decoder: StreamDecoder, forcing: _Forcing, origin: int,
                 limit: int, memory):
        self.stream, self.index, self.decoder, self.forcing = stream, index, decoder, forcing
        self.origin, self.limit, self.memory = origin, limit, memory
        self.var = stream._vars[index]

    def forced(self) -> int | None:
        return self.forcing.next_token(self.decoder.grammar)

    def allowed(self) -> np.ndarray:
        g = self.decoder.grammar
        return self.forcing.restrict(g, g.allowed() & self.stream.gen._keep_meter_and_tempo)

    def take(self, t: int, forced: bool) -> tuple[list, str]:
        tokens = self.var.tokens[-1]
        tokens.append(t)
        notes = _force(self.decoder, t) if forced else self.decoder.feed(t)
        self.forcing.fed(self.decoder.grammar, t)
        out = [] if forced else [self.stream._emit(self.index, note, self.origin) for note in notes]
        if t == self.stream.tok.eos_id:
            self.var.reasons[-1] = "eos"
        elif len(tokens) >= self.limit:
            self.var.reasons[-1] = "tokens"  # a runaway: the rest of the chunk stays as it is
        return out, self.var.reasons[-1]


def infill(gen: Generator, score: Score, start_tick: int, end_tick: int, **kwargs) -> InfillStream:
    """Regenerate the bars from `start_tick` to `end_tick` (widened to bar lines): see InfillStream.

    `instruments`: what the model writes there (default: the instruments of the range, else of the piece);
    notes of other instruments in the range are kept. `locked`: notes in the range to keep (by start,
    pitch and instrument)."""
    return InfillStream(gen, score, start_tick, end_tick, **kwargs)


def add_part(gen: Generator, score: Score, instrument: tuple[int, bool], start_tick: int | None = None,
             end_tick: int | None = None, **kwargs) -> InfillStream:
    """A new track of `instrument` (program, drum) over the bars from `start_tick` to `end_tick` (default:
    the whole piece), written to go with every other instrument there; no existing note changes (notes
    the instrument already has in the range are kept, and the new part is written around them)."""
    if start_tick is None or end_tick is None:
        end = score.end_tick  # where the tokenizer's view of the notes ends (pedal folded in), in the document
        if end <= 0 and end_tick is None:
            raise ValueError("the piece has no notes: give the bars the part should cover")
        start_tick = 0 if start_tick is None else start_tick
        end_tick = end if end_tick is None else end_tick
    return InfillStream(gen, score, start_tick, end_tick, part=instrument, **kwargs)


__all__ = ["InfillStream", "Chunk", "infill", "add_part", "bar_range", "parse_bar_range", "token_bar_lines"]

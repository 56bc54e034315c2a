"""Tokens -> Score, one id at a time: what the grammar accepts becomes notes, tempo and meter changes.

Decoding never raises: an id the grammar refuses at its place is skipped and counted, so a model's output
(or any junk) always gives a Score.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable

from core.score import DEFAULT_BPM, Note, Score, TempoChange, TimeSignature

from .grammar import GrammarState
from .vocabulary import DURATION, FIRST_ID, KIND_OF, PAD, STEP_TICKS, TEMPO, TIMESIG, Vocabulary, level_velocity

_PAD_ID = FIRST_ID[PAD]


@dataclass
class DecodeStats:
    invalid: int = 0  # ids the grammar did not accept at their place (skipped)
    incomplete: int = 0  # a note cut off by the end of the sequence (1 or 0)
    notes: int = 0
    bars: int = 0
    finished: bool = False  # EOS was read


class StreamDecoder:
    """Incremental decoding: `feed` one id at a time, get each note as soon as its duration arrives.

    Ids the grammar does not accept are skipped and counted in `invalid`; PAD is skipped silently.
    Tempo and meter changes accumulate in `tempos` and `time_signatures` (absolute ticks).
    """

    def __init__(self, tokenizer: Vocabulary | None = None) -> None:
        self.grammar = GrammarState(tokenizer)
        self.notes: list[Note] = []
        self.tempos: list[TempoChange] = []
        self.time_signatures: list[TimeSignature] = []
        self.invalid = 0

    @property
    def bars(self) -> int:
        return self.grammar.bars

    @property
    def position(self) -> int:
        return self.grammar.position

    @property
    def finished(self) -> bool:
        return self.grammar.finished

    def feed(self, token_id) -> list[Note]:
        try:
            t = operator.index(token_id)
        except TypeError:
            self.invalid += 1
            return []
        g = self.grammar
        if not g.feed_lenient(t):
            if t != _PAD_ID:
                self.invalid += 1
            return []
        k = KIND_OF[t]
        if k == DURATION:
            program, drum = g.instrument
            note = Note(g.position, g.duration * STEP_TICKS, g.pitch, level_velocity(g.velocity), program, drum)
            self.notes.append(note)
            return [note]
        if k == TEMPO:
            if g.tempo_in_header:  # stated before a bar: it holds from that bar's start
                tick = g.next_start if g.next_start is not None else (
                    g.bar_start + g.bar_ticks if g.bars else 0)
            else:
                tick = g.position
            self.tempos.append(TempoChange(tick, float(g.tempo)))
        elif k == TIMESIG:
            self.time_signatures.append(TimeSignature(g.bar_start, *g.meter))
        return []

    def feed_many(self, ids: Iterable) -> list[Note]:
        out: list[Note] = []
        for t in ids:
            out += self.feed(t)
        return out

    def score(self) -> Score:
        """Everything decoded so far (fresh Note objects: the Score may be edited freely)."""
        notes = [Note(n.start, n.duration, n.pitch, n.velocity, n.program, n.drum) for n in self.notes]
        notes.sort(key=lambda n: n.start)  # an infill's middle comes after the context that follows it
        return Score(notes, _changes(self.tempos, "bpm") or [TempoChange(0, DEFAULT_BPM)],
                     _changes(self.time_signatures, "numerator", "denominator") or [TimeSignature(0, 4, 4)])

    def stats(self) -> DecodeStats:
        g = self.grammar
        return DecodeStats(self.invalid, 1 if g.in_note else 0, len(self.notes), g.bars, g.finished)


def _changes(events: list, *fields: str) -> list:
    """Tempo or meter events by tick, the last one stated at a tick winning, without restatements."""
    by_tick = {}
    for e in events:
        by_tick[e.tick] = e
    out = []
    for tick in sorted(by_tick):
        e = by_tick[tick]
        if not out or any(getattr(e, f) != getattr(out[-1], f) for f in fields):
            out.append(e)
    return out

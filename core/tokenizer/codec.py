"""The Tokenizer: one version of the vocabulary with its encoder, grammar, decoders and bar windows.

It is what the rest of the program holds; the parts it ties together live in the modules beside it.
"""
from __future__ import annotations

from typing import Iterable

from core.score import Score

from .decoder import DecodeStats, StreamDecoder
from .encoder import encode_score
from .grammar import GrammarState
from .vocabulary import Vocabulary


class Tokenizer(Vocabulary):
    """The versioned vocabulary with its encoder, decoders and grammar. Stateless and cheap to share.

    `Tokenizer()` is the latest version; `Tokenizer("rwkvmusic-tok-1")` (or a checkpoint's `from_dict`)
    gives version 1: the same ids without the Flat and infill tokens, for the models made with it."""

    # --- encoding ------------------------------------------------------------------------------
    def encode(self, score: Score, *, eos: bool = True, end_tick: int | None = None) -> list[int]:
        return self.encode_with_report(score, eos=eos, end_tick=end_tick)[0]

    def encode_with_report(self, score: Score, *, eos: bool = True,
                           end_tick: int | None = None) -> tuple[list[int], list[str]]:
        """Tokens of `score` (BOS ... EOS) and one line per kind of change the grid or vocabulary forced.

        `end_tick`: write bars at least up to this tick (e.g. a prompt that ends in silence); `eos=False`
        leaves the sequence open for a continuation.
        """
        return encode_score(self, score, eos=eos, end_tick=end_tick)

    # --- decoding ------------------------------------------------------------------------------
    def decode(self, ids: Iterable) -> tuple[Score, DecodeStats]:
        """Score of the tokens the grammar accepts; never raises. Tick 0 is the first Bar."""
        dec = StreamDecoder(self)
        for t in ids:
            dec.feed(t)
        return dec.score(), dec.stats()

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)

    def grammar(self, prefix: Iterable[int] = (), instruments=None, playable: bool = False) -> GrammarState:
        """A fresh grammar, advanced through `prefix` (raises ValueError on an invalid one), then limited to
        `instruments` (an iterable of (program, drum)) and, with `playable`, to each instrument's playable
        pitches for what comes next."""
        g = GrammarState(self)
        for t in prefix:
            g.advance(t)
        if instruments is not None:
            g.restrict_instruments(instruments)
        g.playable = playable
        return g

    # --- windows ---------------------------------------------------------------------------------
    def bar_indices(self, ids: Iterable[int]) -> list[int]:
        return [i for i, t in enumerate(ids) if t == self.bar_id]

    def header_at(self, ids: list[int], index: int) -> list[int]:
        """Tokens that replace ids[:index + 1] so that header + ids[index + 1:] starts cleanly at that Bar:
        BOS, the tempo and meter in force there, Bar (the meter only where the bar does not state one)."""
        if not 0 <= index < len(ids) or ids[index] != self.bar_id:
            raise ValueError(f"ids[{index}] is not a Bar token")
        g = GrammarState(self)
        for t in ids[:index]:
            g.feed_lenient(t)
        return self._header(g, ids, index)

    def bar_headers(self, ids: list[int]) -> list[tuple[int, list[int]]]:
        """(index, header_at(ids, index)) for every Bar, in one pass."""
        g = GrammarState(self)
        out = []
        for i, t in enumerate(ids):
            if t == self.bar_id:
                out.append((i, self._header(g, ids, i)))
            g.feed_lenient(t)
        return out

    def _header(self, g: GrammarState, ids: list[int], index: int) -> list[int]:
        """The header of the Bar at ids[index], from the grammar `g` that has read ids[:index] (leniently)."""
        header = [self.bos_id]
        if g.flat:
            header.append(self.flat_id)
        if g.tempo is not None:
            header.append(self.tempo_id(g.tempo))
        header.append(self.bar_id)
        states_meter = index + 1 < len(ids) and self.kind(ids[index + 1]) == "timesig"
        if g.meter is not None and not states_meter:
            header.append(self.timesig_id(*g.meter))
        return header

"""The infill layout, written once: where each part of an infill sequence goes, for the examples training
learns from (core.training.data) and the prompts the app gives the model (core.infill), so that both are the same
token sequence up to the middle's first notes (tests/test_infill_layout.py checks it).

    bars:  <before> Gap_k  Tempo Bar TimeSig <after>  Fill Tempo Bar TimeSig <k bars>  EOS
    part:  <the bars, without p>  Part Program_p  Fill Tempo Bar TimeSig <the same bars, p only>  EOS

`before` starts as a piece does (BOS [Flat] Tempo Bar ...) or, once bars before the gap are left out, with
the header of its first kept bar (header_at: BOS [Flat] Tempo Bar TimeSig); with no bar before the gap it
is the header where the gap starts without its Bar. What follows Gap_k and Fill is restated: the header
without BOS and Flat. Where the context is too long, the bar furthest from the gap is left out first (on
the side with more bars; after the gap on a tie), one at a time. Training learns every token of an
example; the middle, what the model writes, starts after Fill (`middle_start`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


def restated(tok, tokens: Sequence[int]) -> list[int]:
    """`tokens` as they stand after Gap_k or Fill: without BOS and Flat (a header becomes Tempo Bar [TimeSig])."""
    return [t for t in tokens if t != tok.bos_id and t != tok.flat_id]


def opening(tok, header: Sequence[int]) -> list[int]:
    """A bar's header without its Bar (BOS [Flat] Tempo): the context before Gap_k when no bar before the gap
    is kept, as at a piece's start."""
    return list(header[:list(header).index(tok.bar_id)])


def middle(tok, tokens: Sequence[int]) -> list[int]:
    """Fill, then the middle's tokens restated (its first bar's header, then its bars)."""
    return [tok.fill_id] + restated(tok, tokens)


def part_context(tok, others: Sequence[int], instrument: tuple[int, bool]) -> list[int]:
    """The bars without the part's instrument, then Part and that instrument: what comes before Fill."""
    return list(others) + [tok.part_id, tok.instrument_id(*instrument)]


def middle_start(tok, seq: Sequence[int]) -> int:
    """The index of the first token after Fill: where the middle starts."""
    return list(seq).index(tok.fill_id) + 1


@dataclass
class BarGap:
    """What stands around a gap of bars, as whole bars that the context may leave out (made by bar_gap)."""
    gap_id: int  # the Gap_k token
    before: list[int]  # the tokens before the gap, from the piece's start (BOS [Flat] Tempo, then its bars)
    before_bars: list[tuple[int, list[int]]]  # (index in `before` of each Bar, that bar's header), in order
    opening: list[int]  # BOS [Flat] Tempo where the gap starts, to stand before Gap_k when no bar before it is kept
    after: list[int]  # the bars after the gap, restated (Tempo Bar [TimeSig] ...); empty when none
    after_bars: list[int]  # index in `after` of each Bar

    def context(self, kept_before: int, kept_after: int) -> list[int]:
        """The last `kept_before` bars before the gap, Gap_k, the first `kept_after` bars after it."""
        n = len(self.before_bars)
        if kept_before >= n:
            ids = list(self.before)
        elif kept_before == 0:
            ids = list(self.opening)
        else:
            index, header = self.before_bars[n - kept_before]
            ids = header + self.before[index + 1:]
        ids.append(self.gap_id)
        if kept_after:
            ids += self.after[:self.after_bars[kept_after]] if kept_after < len(self.after_bars) else self.after
        return ids

    def fitted(self, fits: Callable[[list[int]], bool]) -> list[int]:
        """The context with the fewest bars left out for which `fits(context)`, leaving out first the bar
        furthest from the gap; with every bar left out when none fits."""
        kept_before, kept_after = len(self.before_bars), len(self.after_bars)
        while True:
            ids = self.context(kept_before, kept_after)
            if fits(ids) or not (kept_before or kept_after):
                return ids
            if kept_after and (not kept_before or kept_after >= kept_before):
                kept_after -= 1
            else:
                kept_before -= 1


def bar_gap(tok, bars: int, before: list[int], before_bars: list[tuple[int, list[int]]], opening_ids: list[int],
            after: Sequence[int]) -> BarGap:
    """The BarGap of `bars` missing bars. `before`: from the piece's start, or `opening_ids` when no bar is
    before the gap; `before_bars`: tok.bar_headers(before), where known; `after`: from the header of the bar
    after the gap (restated here), or empty."""
    after = restated(tok, after)
    return BarGap(tok.gap_id(bars), before, before_bars, opening_ids, after,
                  [i for i, t in enumerate(after) if t == tok.bar_id])

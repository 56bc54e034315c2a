"""The grammar: where a token sequence stands, and which tokens may come next (the layout: core.tokenizer).

It is the one definition of a valid sequence: the encoder writes only what it accepts, sampling is masked by
`allowed()`, and the decoders keep exactly the tokens it accepts.
"""
from __future__ import annotations

import bisect
import contextlib
import operator
from typing import Iterable, Iterator

import numpy as np

from .vocabulary import (BAR, BOS, DRUMS_ID, DURATION, EOS, FILL, FIRST_ID, FLAT, GAP, GRID, INSTRUMENT, KIND_OF,
                         MAX_BAR_STEPS, MAX_ONSET_NOTES, PART, PITCH, POS, STEP_TICKS, TEMPO, TIMESIG, VALUE_OF,
                         VELOCITY, VELOCITY_LEVELS, Vocabulary, meter_steps, playable_range)

# Grammar states: what was read last.
(_S_START, _S_BOS, _S_HEAD_TEMPO, _S_BAR, _S_TIMESIG, _S_POS, _S_POS_TEMPO, _S_INSTRUMENT, _S_VELOCITY,
 _S_PITCH, _S_DURATION, _S_END, _S_FLAT, _S_GAP, _S_PART, _S_PART_INSTRUMENT, _S_FILL) = range(17)
_POS_STATES = frozenset((_S_BAR, _S_TIMESIG, _S_POS_TEMPO, _S_DURATION))  # a new onset may follow
_HEAD_STATES = frozenset((_S_BOS, _S_FLAT, _S_GAP, _S_FILL))  # a Tempo here opens a (restated) header
_NOTE_STATES = frozenset((_S_INSTRUMENT, _S_VELOCITY, _S_PITCH))  # a note begun, its duration still to come
# Segments of a sequence: the music (or an infill's context before the gap), the context after a Gap, the middle.
_SEG_MAIN, _SEG_AFTER, _SEG_MIDDLE = range(3)

_MASK_CACHE: dict[tuple, np.ndarray] = {}  # the vocabulary is fixed, so every grammar shares the masks
_LATEST = Vocabulary()  # for a grammar made without one


class GrammarState:
    """Where a token sequence stands in the grammar, and which tokens may come next.

    `allowed()` is a bool mask over the vocabulary (cached per state class; only the position and pitch
    ranges are filled per call); `advance()` moves on and raises ValueError on a token the grammar does not
    allow. `tokenizer`: any Vocabulary (a Tokenizer is one); None is the latest version.
    """

    __slots__ = ("tok", "state", "meter", "bar_steps", "bar_start", "pos", "instrument", "velocity", "pitch",
                 "duration", "tempo", "bars", "flat", "playable", "segment", "fill_bars", "fill_left",
                 "gap_tick", "next_start", "_restriction", "_velocities", "_onset", "_caps", "_ranges", "_grid")

    def __init__(self, tokenizer: Vocabulary | None = None, instruments=None) -> None:
        self.tok = tokenizer if tokenizer is not None else _LATEST
        self.state = _S_START
        self.meter: tuple[int, int] | None = None
        self.bar_steps = 0
        self.bar_start = 0  # tick of the current bar
        self.pos = -1  # step of the current onset in the bar, -1 before the first
        self.instrument: tuple[int, bool] | None = None
        self.velocity: int | None = None  # level in force for the current instrument
        self._velocities: dict[tuple[int, bool], int] = {}  # level of each instrument in this bar
        self._onset: dict[tuple[int, bool], tuple[int, int]] = {}  # instrument -> (highest pitch, notes) here
        self.pitch: int | None = None
        self.duration = 0  # steps of the last note
        self.tempo: int | None = None
        self.bars = 0
        self.flat = False  # the piece declared one velocity throughout
        self.playable = False  # limit pitches to each instrument's playable range (for sampling)
        self.segment = _SEG_MAIN
        self.fill_bars = 0  # bars the middle of an infill must have
        self.fill_left: int | None = None  # Bar tokens still to come in the middle
        self.gap_tick = 0  # where the middle goes
        self.next_start: int | None = None  # tick of the next Bar when it does not simply follow the last
        self._restriction: frozenset | None = None
        self._caps: dict | None = None  # sampling: instrument -> most notes it starts at one onset
        self._ranges: dict | None = None  # sampling: instrument -> (lowest, highest) pitch, for playable_range
        self._grid: list[int] | None = None  # sampling: the steps of a bar on the piece's grid, ascending
        if instruments is not None:
            self.restrict_instruments(instruments)

    # --- queries -------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Tick of the current onset (the bar's start before its first onset)."""
        return self.bar_start + max(self.pos, 0) * STEP_TICKS

    @property
    def finished(self) -> bool:
        return self.state == _S_END

    @property
    def bar_ticks(self) -> int:
        """Length of the current bar in ticks (0 before the first meter)."""
        return self.bar_steps * STEP_TICKS

    @property
    def at_boundary(self) -> bool:
        """Whether the music read so far is complete: no note or onset is left half-written."""
        return self.state in _POS_STATES

    @property
    def in_note(self) -> bool:
        """Whether a note is half-written: its instrument, velocity or pitch read, its duration not yet."""
        return self.state in _NOTE_STATES

    @property
    def tempo_in_header(self) -> bool:
        """Whether the last token was a Tempo stated before a bar (so it holds from that bar's start), not a
        change at an onset."""
        return self.state == _S_HEAD_TEMPO

    @property
    def in_middle(self) -> bool:
        """Whether the tokens now written are the middle of an infill."""
        return self.segment == _SEG_MIDDLE

    @property
    def instruments(self) -> frozenset | None:
        return self._restriction

    def restrict_instruments(self, instruments) -> None:
        """From now on, new notes only on these (program, drum) instruments; None lifts the limit."""
        if instruments is None:
            self._restriction = None
            return
        allowed = frozenset((0, True) if drum else (int(program), False) for program, drum in instruments)
        if not allowed or any(not 0 <= p <= 127 for p, _ in allowed):
            raise ValueError(f"instruments must be a non-empty set of (program 0..127, drum): {instruments!r}")
        self._restriction = allowed

    def limit_onsets(self, caps=None, ranges=None) -> None:
        """While sampling (`playable`): at most caps[instrument] notes of an instrument start at one onset,
        and its pitches lie in ranges[instrument] instead of its playable range (core.idiom says how an
        instrument is played, and how many notes the piece's instruments start together). None: no limit."""
        self._caps = dict(caps) if caps else None
        self._ranges = dict(ranges) if ranges else None

    def limit_grid(self, offsets=None) -> None:
        """While sampling (`playable`): `snapped` moves a sampled onset to the nearest step of the bar whose place
        within the beat (step % GRID) is one of `offsets` (core.idiom.onset_grid: the places the piece's own
        onsets take). None (or no places): no grid."""
        if not offsets:
            self._grid = None
            return
        places = {int(o) % GRID for o in offsets}
        self._grid = [step for step in range(MAX_BAR_STEPS) if step % GRID in places]

    def snapped(self, t: int) -> int:
        """A sampled token with its onset on the grid (limit_grid): a Pos token off it becomes the nearest step
        on it later in the bar than the current onset (the earlier of two; `allowed` offers only steps less
        than half a beat from one). Snapping, not masking: a masked onset would hand its probability to
        leaving the bar empty."""
        grid = self._grid
        if grid is None or not self.playable or KIND_OF[t] != POS:
            return t
        step = VALUE_OF[t]
        first, end = self._grid_ahead()
        at = bisect.bisect_left(grid, step, first, end)  # the first place on the grid at or after the step
        if first == end or at < end and grid[at] == step:
            return t
        near = min((grid[i] for i in (at - 1, at) if first <= i < end), key=lambda s: (abs(s - step), s))
        return FIRST_ID[POS] + near if abs(near - step) < GRID // 2 else t

    @contextlib.contextmanager
    def unrestricted(self) -> Iterator["GrammarState"]:
        """Lift the instrument restriction and the playable ranges inside the `with` block, and put them back
        after it (even on an error): a token forced into the sequence, such as a note kept from the user's
        music, need not obey the limits that bind the model's own notes."""
        restriction, playable = self._restriction, self.playable
        self._restriction, self.playable = None, False
        try:
            yield self
        finally:
            self._restriction, self.playable = restriction, playable

    def _instrument_ok(self) -> bool:
        return self.instrument is not None and (self._restriction is None or self.instrument in self._restriction)

    def _pitch_range(self, instrument=None) -> tuple[int, int]:
        """Pitches an instrument (the current one by default) may start now (empty when lo > hi): rising
        within an onset, at most MAX_ONSET_NOTES, and inside the playable range when asked."""
        instrument = instrument or self.instrument
        cap = MAX_ONSET_NOTES
        if self.playable:
            lo, hi = (self._ranges or {}).get(instrument) or playable_range(*instrument)
            cap = min(cap, (self._caps or {}).get(instrument, cap))
        else:
            lo, hi = 0, 127
        done = self._onset.get(instrument)
        if done is not None:
            if done[1] >= cap:
                return 1, 0
            lo = max(lo, done[0] + 1)
        return lo, hi

    def _can_start(self, instrument=None) -> bool:
        """Whether an instrument (the current one by default) may still start a note at this onset."""
        lo, hi = self._pitch_range(instrument)
        return lo <= hi

    def _pitch_ok(self, pitch: int) -> bool:
        lo, hi = self._pitch_range()
        return lo <= pitch <= hi

    def _bar_may_end(self, k: int) -> bool:
        """Whether a token of kind `k` that ends a bar may come (where Bar or EOS could)."""
        seg = self.segment
        if k == BAR:
            return seg != _SEG_MIDDLE or self.fill_left > 0
        if k == EOS:
            return seg == _SEG_MAIN or (seg == _SEG_MIDDLE and self.fill_left == 0)
        if k == GAP or k == PART:
            return seg == _SEG_MAIN
        if k == FILL:
            return seg == _SEG_AFTER
        return False

    def accepts(self, t) -> bool:
        """Whether token id `t` may come next."""
        if not (isinstance(t, (int, np.integer)) and 0 <= t < self.tok.vocab_size):
            return False
        k = KIND_OF[t]
        s = self.state
        if s == _S_DURATION or s == _S_POS_TEMPO or s == _S_POS:
            if k == PITCH:
                return self._instrument_ok() and self.velocity is not None and self._pitch_ok(VALUE_OF[t])
            if k == INSTRUMENT:
                return ((self._restriction is None or VALUE_OF[t] in self._restriction)
                        and self._can_start(VALUE_OF[t]))
            if k == VELOCITY:
                return self._instrument_ok() and self._can_start()
            if s == _S_POS:
                return k == TEMPO
            if k == POS:
                return self.pos < VALUE_OF[t] < self.bar_steps
            return self._bar_may_end(k)
        if s == _S_PITCH:
            return k == DURATION
        if s == _S_INSTRUMENT:
            return k == VELOCITY or (k == PITCH and self.velocity is not None and self._pitch_ok(VALUE_OF[t]))
        if s == _S_VELOCITY:
            return k == PITCH and self._pitch_ok(VALUE_OF[t])
        if s == _S_BAR and self.meter is None:
            return k == TIMESIG
        if s == _S_BAR or s == _S_TIMESIG:
            if k == POS:
                return VALUE_OF[t] < self.bar_steps
            if k == TIMESIG:
                return s == _S_BAR
            return self._bar_may_end(k)
        if s == _S_START:
            return k == BOS
        if s == _S_BOS:
            return k == TEMPO or k == BAR or k == FLAT
        if s == _S_FLAT:
            return k == TEMPO or k == BAR
        if s == _S_HEAD_TEMPO:  # a gap may open the piece: regenerate its first bars
            return k == BAR or (k == GAP and self.segment == _SEG_MAIN and self.bars == 0)
        if s == _S_GAP:
            return k == TEMPO or k == FILL
        if s == _S_PART:
            return k == INSTRUMENT
        if s == _S_PART_INSTRUMENT:
            return k == FILL
        if s == _S_FILL:
            return k == TEMPO
        return False  # _S_END

    def allowed(self) -> np.ndarray:
        """Bool mask [vocab_size] of the valid next tokens. May be a shared read-only array: copy to modify."""
        s = self.state
        inst_ok = self._instrument_ok()
        key = (s, self.meter is None, inst_ok, self.velocity is not None, self._restriction, self.segment,
               self.fill_left == 0, self.bars == 0)
        mask = self._class_mask(key)
        pos_range = s in _POS_STATES and self.meter is not None
        pitches = inst_ok and self.velocity is not None and (
            s in (_S_POS, _S_POS_TEMPO, _S_DURATION, _S_INSTRUMENT, _S_VELOCITY))
        # instruments that can start no more notes at this onset (a chord full, or its top pitch reached)
        full = [inst for inst in self._onset if not self._can_start(inst)]
        if pos_range or pitches or full:
            mask = mask.copy()
        for inst in full:
            mask[DRUMS_ID if inst[1] else FIRST_ID[INSTRUMENT] + inst[0]] = False
            if inst == self.instrument:
                mask[FIRST_ID[VELOCITY]:FIRST_ID[VELOCITY] + VELOCITY_LEVELS] = False
        if pos_range:
            lo, hi = self._onset_steps()
            mask[FIRST_ID[POS] + lo:FIRST_ID[POS] + hi] = True
        if pitches:
            lo, hi = self._pitch_range()
            if lo <= hi:
                mask[FIRST_ID[PITCH] + lo:FIRST_ID[PITCH] + hi + 1] = True
        if pos_range and not mask.any():  # the grid took the bar's last onsets and nothing else may follow
            mask[FIRST_ID[POS] + self.pos + 1:FIRST_ID[POS] + self.bar_steps] = True
        return mask

    def _onset_steps(self) -> tuple[int, int]:
        """[lo, hi): the steps of the bar a new onset may take. On a grid, those that `snapped` can move onto
        it: within half a beat of a step on it later in the bar (the grid has a place in every beat, so
        every step between its first and last is). An onset past the bar's last place on the grid is the
        next bar's to play."""
        lo, hi, grid = self.pos + 1, self.bar_steps, self._grid
        if grid is None or not self.playable:
            return lo, hi
        first, end = self._grid_ahead()
        if first == end:
            return lo, lo
        return max(lo, grid[first] - GRID // 2 + 1), min(hi, grid[end - 1] + GRID // 2)

    def _grid_ahead(self) -> tuple[int, int]:
        """[first, end): the indices in the grid of its steps after the current onset, within the bar."""
        return bisect.bisect_left(self._grid, self.pos + 1), bisect.bisect_left(self._grid, self.bar_steps)

    def _class_mask(self, key: tuple) -> np.ndarray:
        """Allowed ids for a class of states (`key`), without the position and pitch tokens (added per state).
        Built once per vocabulary size and key by asking `accepts` of every id, then shared read-only."""
        vocab_size = self.tok.vocab_size
        key = (vocab_size,) + key
        mask = _MASK_CACHE.get(key)
        if mask is None:
            mask = np.zeros(vocab_size, dtype=bool)
            onset, self._onset = self._onset, {}  # which instruments are full at this onset is not in the key:
            try:  # allowed() takes them out per call
                for t in range(vocab_size):
                    if KIND_OF[t] != POS and KIND_OF[t] != PITCH:
                        mask[t] = self.accepts(t)
            finally:
                self._onset = onset
            mask.flags.writeable = False
            _MASK_CACHE[key] = mask
        return mask

    # --- moving on -------------------------------------------------------------------------------
    def advance(self, t) -> None:
        try:
            t = operator.index(t)  # numpy and 0-d tensor ids too
        except TypeError:
            raise ValueError(f"{t!r} is not a token id") from None
        if not self.accepts(t):
            raise ValueError(f"token {self.tok.token_name(t)} is not allowed here "
                             f"(state {self.state}, bar {self.bars}, position {self.pos})")
        self._apply(t)

    def advance_many(self, ids: Iterable[int]) -> None:
        for t in ids:
            self.advance(t)

    def feed_lenient(self, t) -> bool:
        """Advance if `t` is allowed; otherwise leave the state as it is. Returns whether it was taken."""
        if self.accepts(t):
            self._apply(int(t))
            return True
        return False

    def _apply(self, t: int) -> None:
        """Move on by token `t`, which `accepts` allowed. The note tokens, read most, are handled inline."""
        k = KIND_OF[t]
        v = VALUE_OF[t]
        if k == PITCH:
            self._read_pitch(v)
        elif k == DURATION:
            self.duration = v
            self.state = _S_DURATION
        elif k == POS:
            self.pos = v
            self._onset = {}
            self.state = _S_POS
        elif k == INSTRUMENT:
            self._read_instrument(v)
        elif k == VELOCITY:
            self.velocity = self._velocities[self.instrument] = v
            self.state = _S_VELOCITY
        elif k == BAR:
            self._start_bar()
        elif k == TEMPO:
            self.tempo = v
            self.state = _S_HEAD_TEMPO if self.state in _HEAD_STATES else _S_POS_TEMPO
        elif k == TIMESIG:
            self.meter = v
            self.bar_steps = meter_steps(v)
            self.state = _S_TIMESIG
        elif k == BOS:
            self.state = _S_BOS
        elif k == EOS:
            self.state = _S_END
        elif k == FLAT:
            self.flat = True
            self.state = _S_FLAT
        elif k == GAP:
            self._open_gap(v)
        elif k == PART:
            self._open_part()
        elif k == FILL:
            self._open_middle()

    def _read_pitch(self, pitch: int) -> None:
        self.pitch = pitch
        self._velocities[self.instrument] = self.velocity  # also when inherited from another instrument
        done = self._onset.get(self.instrument)
        self._onset[self.instrument] = (pitch, done[1] + 1 if done else 1)
        self.state = _S_PITCH

    def _read_instrument(self, instrument: tuple[int, bool]) -> None:
        if self.state == _S_PART:  # the part an infill writes: the middle has only this instrument
            self._restriction = frozenset((instrument,))
            self.state = _S_PART_INSTRUMENT
            return
        self.instrument = instrument
        self.velocity = self._velocities.get(instrument, self.velocity)
        self.state = _S_INSTRUMENT

    def _start_bar(self) -> None:
        if self.next_start is not None:  # the first bar after a gap, or of a middle
            self.bar_start, self.next_start = self.next_start, None
        elif self.bars:
            self.bar_start += self.bar_steps * STEP_TICKS
        self.bars += 1
        if self.fill_left is not None:
            self.fill_left -= 1
        self._forget_bar()  # every bar states them again: bars are self-contained
        self.state = _S_BAR

    def _open_gap(self, bars: int) -> None:
        # the missing bars take the meter in force; the context after them starts past them
        self.gap_tick = self.bar_start + self.bar_steps * STEP_TICKS if self.bars else 0
        self.fill_bars = bars
        self.next_start = self.gap_tick + bars * self.bar_steps * STEP_TICKS
        self.segment = _SEG_AFTER
        self._new_segment(_S_GAP)

    def _open_part(self) -> None:
        self.gap_tick = 0  # the middle covers the context's bars, from the first
        self.fill_bars = self.bars
        self.state = _S_PART

    def _open_middle(self) -> None:
        self.segment = _SEG_MIDDLE
        self.fill_left = self.fill_bars
        self.next_start = self.gap_tick
        self._new_segment(_S_FILL)

    def _new_segment(self, state: int) -> None:
        """A Gap or Fill: tempo and meter are restated next, and nothing of the last bar carries over."""
        self.meter = None
        self._forget_bar()
        self.state = state

    def _forget_bar(self) -> None:
        """Drop what held within the bar: the onset, the instrument and the velocities in force."""
        self.pos = -1
        self.instrument = self.velocity = None
        self._velocities = {}
        self._onset = {}

    def copy(self) -> "GrammarState":
        g = GrammarState.__new__(GrammarState)
        for name in GrammarState.__slots__:
            setattr(g, name, getattr(self, name))
        g._velocities = dict(self._velocities)
        g._onset = dict(self._onset)
        return g

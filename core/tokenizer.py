"""Score <-> tokens: the vocabulary, the encoder, the grammar of valid next tokens and the decoders.

A piece is written bar by bar on a grid of GRID steps per quarter note:

    BOS [Flat] Tempo                            Flat: every note has one velocity (a score, not a performance)
    Bar [TimeSig] ( Pos [Tempo] note* )*        one line per bar; TimeSig in the first bar and on a change
    ...
    EOS

    note := [Program_p | Drums] [Vel_v] Pitch_n Dur_d

`Pos` is the onset within the bar (strictly increasing inside a bar); a `Tempo` right after a `Pos` is a
tempo change there (`Pos Tempo` alone is a change without a note). The instrument is written only when it
differs from the previous note's; the velocity only when it differs from the one in force, which is that of
the instrument's previous note in the bar, or else the previous note's (so parts keep their own dynamics
while the notes of one onset switch between them).
Both are forgotten at every `Bar`, so every bar is self-contained: a window that starts at any `Bar` only
needs `header_at()` (BOS, Flat, tempo, Bar, meter). At one onset an instrument's pitches strictly rise, so the
same note is never written twice, and at most MAX_ONSET_NOTES of them start together.

Version 2 adds infilling, laid out so that a recurrent model reads the context once and then writes the
missing part (fill-in-the-middle):

    bars:  <before> Gap_k  Tempo Bar TimeSig <after>  Fill Tempo Bar TimeSig <k bars>  EOS
    part:  <bars, without one instrument>  Part Program_p  Fill Tempo Bar TimeSig <the same bars, p only>  EOS

`Gap_k` stands for k missing bars (the meter then in force sets their length); the part after it and the
middle restate tempo and meter. The middle has exactly k bars (the bars of the context for a part) and
only instrument p in a part. Version 1 (`rwkvmusic-tok-1`, the first 1075 ids) has none of these tokens.

The grammar (`GrammarState`) is the one definition of a valid sequence: the encoder writes only valid
sequences, sampling is masked by it, and the decoders keep exactly the tokens it accepts (the rest are
skipped and counted), so decoding never raises.
"""
from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from core.score import DEFAULT_BPM, TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature

GRID = 24  # steps per quarter note: 32nd notes (3 steps) and triplets down to 16th triplets (4 steps)
STEP_TICKS = TICKS_PER_BEAT // GRID
assert STEP_TICKS * GRID == TICKS_PER_BEAT

MAX_BAR_QUARTERS = 12
MAX_BAR_STEPS = MAX_BAR_QUARTERS * GRID
METER_DENOMINATORS = (1, 2, 4, 8, 16)
METERS = tuple((n, d) for d in METER_DENOMINATORS for n in range(1, MAX_BAR_QUARTERS * d // 4 + 1))
TEMPO_MIN, TEMPO_MAX = 20, 300
VELOCITY_LEVELS = 32  # bins of 4: level v holds velocities 4v+1..4v+4 and decodes to 4v+4 (127 at the top)
# Durations: every grid step up to 4 beats, then in quarter notes up to 16 beats, then in 4 beats up to 64.
DURATION_STEPS = (tuple(range(1, 4 * GRID + 1))
                  + tuple(range(5 * GRID, 16 * GRID + 1, GRID))
                  + tuple(range(20 * GRID, 64 * GRID + 1, 4 * GRID)))

MAX_GAP_BARS = 16  # the longest bar range one infill regenerates
MAX_ONSET_NOTES = 12  # notes one instrument may start at one onset (POP909's fullest chords have 10)

# Token kinds (version 2 appends FLAT..FILL after version 1's blocks, so version 1 ids are unchanged).
PAD, BOS, EOS, BAR, TIMESIG, POS, TEMPO, INSTRUMENT, VELOCITY, PITCH, DURATION, FLAT, GAP, PART, FILL = range(15)
KIND_NAMES = ("pad", "bos", "eos", "bar", "timesig", "pos", "tempo", "instrument", "velocity", "pitch",
              "duration", "flat", "gap", "part", "fill")
NOTE_KINDS = frozenset((INSTRUMENT, VELOCITY, PITCH, DURATION))

# Grammar states: what was read last.
(_S_START, _S_BOS, _S_HEAD_TEMPO, _S_BAR, _S_TIMESIG, _S_POS, _S_POS_TEMPO, _S_INSTRUMENT, _S_VELOCITY,
 _S_PITCH, _S_DURATION, _S_END, _S_FLAT, _S_GAP, _S_PART, _S_PART_INSTRUMENT, _S_FILL) = range(17)
_POS_STATES = frozenset((_S_BAR, _S_TIMESIG, _S_POS_TEMPO, _S_DURATION))  # a new onset may follow
_HEAD_STATES = frozenset((_S_BOS, _S_FLAT, _S_GAP, _S_FILL))  # a Tempo here opens a (restated) header
# Segments of a sequence: the music (or an infill's context before the gap), the context after a Gap, the middle.
_SEG_MAIN, _SEG_AFTER, _SEG_MIDDLE = range(3)

# Playable MIDI pitches per General MIDI family of 8 programs (piano, chromatic percussion, organ, guitar,
# bass, strings, ensemble, brass, reed, pipe, synth lead, pad, fx, ethnic, percussive, sfx).
_FAMILY_RANGE = ((21, 108), (48, 108), (24, 96), (40, 88), (23, 67), (28, 103), (28, 96), (34, 84),
                 (34, 96), (48, 108), (24, 108), (24, 108), (24, 108), (36, 96), (36, 96), (24, 108))
_DRUM_RANGE = (27, 87)  # General MIDI percussion keys (with the common extensions)


def playable_range(program: int, drum: bool = False) -> tuple[int, int]:
    """Lowest and highest MIDI pitch an instrument plays (General MIDI ranges by family)."""
    return _DRUM_RANGE if drum else _FAMILY_RANGE[min(max(int(program), 0), 127) // 8]


def meter_steps(meter: tuple[int, int]) -> int:
    """Grid steps in one bar of `meter` (numerator, denominator)."""
    n, d = meter
    return n * 4 * GRID // d


def velocity_level(velocity: int) -> int:
    return (min(max(int(velocity), 1), 127) - 1) // 4


def level_velocity(level: int) -> int:
    return min(4 * level + 4, 127)


def _meter_for_steps(steps: int) -> tuple[int, int]:
    """The simplest supported meter whose bar lasts `steps` grid steps (rounded to a 16th)."""
    sixteenths = min(max(round(steps / (GRID // 4)), 1), MAX_BAR_QUARTERS * 4)
    for d in (4, 8, 16):
        if sixteenths * d % 16 == 0:
            return sixteenths * d // 16, d
    raise AssertionError("unreachable: d=16 always divides")


def supported_meter(numerator: int, denominator: int) -> tuple[int, int]:
    """`(numerator, denominator)` itself if the vocabulary has it, else the nearest one by bar length."""
    if (numerator, denominator) in _METER_INDEX:
        return numerator, denominator
    if denominator in METER_DENOMINATORS and numerator > 0:  # too long a bar: the longest of its kind
        return min(numerator, MAX_BAR_QUARTERS * denominator // 4), denominator
    steps = numerator * 4 * GRID / denominator if numerator > 0 and denominator > 0 else 4 * GRID
    return _meter_for_steps(round(steps))


_METER_INDEX = {m: i for i, m in enumerate(METERS)}


class _Vocabulary:
    """Token names, kinds and values, laid out in blocks of one kind each."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kinds: list[int] = []
        self.values: list = []
        self.offset: dict[int, int] = {}
        self._add(PAD, ["PAD"], [None])
        self._add(BOS, ["BOS"], [None])
        self._add(EOS, ["EOS"], [None])
        self._add(BAR, ["Bar"], [None])
        self._add(TIMESIG, [f"TimeSig_{n}/{d}" for n, d in METERS], list(METERS))
        self._add(POS, [f"Pos_{p}" for p in range(MAX_BAR_STEPS)], list(range(MAX_BAR_STEPS)))
        tempos = list(range(TEMPO_MIN, TEMPO_MAX + 1))
        self._add(TEMPO, [f"Tempo_{b}" for b in tempos], tempos)
        self._add(INSTRUMENT, [f"Program_{p}" for p in range(128)] + ["Drums"],
                  [(p, False) for p in range(128)] + [(0, True)])
        self._add(VELOCITY, [f"Vel_{v}" for v in range(VELOCITY_LEVELS)], list(range(VELOCITY_LEVELS)))
        self._add(PITCH, [f"Pitch_{p}" for p in range(128)], list(range(128)))
        self._add(DURATION, [f"Dur_{s}" for s in DURATION_STEPS], list(DURATION_STEPS))
        self.v1_size = len(self.names)
        self._add(FLAT, ["Flat"], [None])
        self._add(GAP, [f"Gap_{k}" for k in range(1, MAX_GAP_BARS + 1)], list(range(1, MAX_GAP_BARS + 1)))
        self._add(PART, ["Part"], [None])
        self._add(FILL, ["Fill"], [None])
        self.size = len(self.names)
        self.kind_array = np.array(self.kinds, dtype=np.int8)

    def _add(self, kind: int, names: list[str], values: list) -> None:
        self.offset[kind] = len(self.names)
        self.names += names
        self.kinds += [kind] * len(names)
        self.values += values


_VOCAB = _Vocabulary()
_KINDS = _VOCAB.kinds
_VALUES = _VOCAB.values
_OFF = _VOCAB.offset
_DRUMS_ID = _OFF[INSTRUMENT] + 128


@dataclass
class DecodeStats:
    invalid: int = 0  # ids the grammar did not accept at their place (skipped)
    incomplete: int = 0  # a note cut off by the end of the sequence (1 or 0)
    notes: int = 0
    bars: int = 0
    finished: bool = False  # EOS was read


VERSIONS = ("rwkvmusic-tok-1", "rwkvmusic-tok-2")
LATEST = VERSIONS[-1]


class Tokenizer:
    """The versioned vocabulary with its encoder, decoders and grammar. Stateless and cheap to share.

    `Tokenizer()` is the latest version; `Tokenizer("rwkvmusic-tok-1")` (or a checkpoint's `from_dict`)
    gives version 1: the same ids without the Flat and infill tokens, for the models made with it."""

    GRID = GRID
    VERSION = LATEST  # of this instance: set in __init__

    def __init__(self, version: str = LATEST) -> None:
        if version not in VERSIONS:
            raise ValueError(f"unknown tokenizer version {version!r}: this program knows {', '.join(VERSIONS)}")
        self.VERSION = version
        self.vocab_size = _VOCAB.v1_size if version == VERSIONS[0] else _VOCAB.size
        self.pad_id, self.bos_id, self.eos_id, self.bar_id = (_OFF[k] for k in (PAD, BOS, EOS, BAR))
        self.infill = self.vocab_size > _VOCAB.v1_size
        self.flat_id = _OFF[FLAT] if self.infill else None
        self.part_id = _OFF[PART] if self.infill else None
        self.fill_id = _OFF[FILL] if self.infill else None

    # --- vocabulary --------------------------------------------------------------------------
    def token_name(self, i: int) -> str:
        return _VOCAB.names[i] if 0 <= i < self.vocab_size else f"<invalid {i}>"

    def token_id(self, name: str) -> int:
        return _NAME_INDEX[name]

    def kind(self, i: int) -> str:
        """One of KIND_NAMES, or "invalid" for an id outside the vocabulary."""
        return KIND_NAMES[_KINDS[i]] if 0 <= i < self.vocab_size else "invalid"

    def value(self, i: int):
        """The token's value: meter (n, d), position step, BPM, (program, drum), level, pitch, duration steps."""
        return _VALUES[i]

    def is_note_token(self, i: int) -> bool:
        return 0 <= i < self.vocab_size and _KINDS[i] in NOTE_KINDS

    @property
    def kind_ids(self) -> np.ndarray:
        """Kind code (PAD..FILL) of every id, e.g. to weight or mask a loss by kind."""
        return _VOCAB.kind_array[:self.vocab_size]

    def gap_id(self, bars: int) -> int:
        if not self.infill:
            raise ValueError(f"tokenizer {self.VERSION} has no infill tokens")
        if not 1 <= bars <= MAX_GAP_BARS:
            raise ValueError(f"a gap of {bars} bars: infill covers 1..{MAX_GAP_BARS} bars")
        return _OFF[GAP] + bars - 1

    def timesig_id(self, numerator: int, denominator: int) -> int:
        return _OFF[TIMESIG] + _METER_INDEX[(numerator, denominator)]

    def pos_id(self, step: int) -> int:
        if not 0 <= step < MAX_BAR_STEPS:
            raise ValueError(f"position {step} outside 0..{MAX_BAR_STEPS - 1}")
        return _OFF[POS] + step

    def tempo_id(self, bpm: float) -> int:
        return _OFF[TEMPO] + min(max(round(bpm), TEMPO_MIN), TEMPO_MAX) - TEMPO_MIN

    def instrument_id(self, program: int, drum: bool = False) -> int:
        return _DRUMS_ID if drum else _OFF[INSTRUMENT] + program

    def velocity_id(self, velocity: int) -> int:
        return _OFF[VELOCITY] + velocity_level(velocity)

    def pitch_id(self, pitch: int) -> int:
        return _OFF[PITCH] + pitch

    def duration_id(self, steps: int) -> int:
        """The duration token nearest to `steps` grid steps (clamped to the longest)."""
        return _OFF[DURATION] + _nearest_duration_index(steps)

    def ids_of_kind(self, kind: str) -> range:
        k = KIND_NAMES.index(kind)
        start = min(_OFF[k], self.vocab_size)
        return range(start, min(_OFF[k + 1] if k + 1 in _OFF else _VOCAB.size, self.vocab_size))

    # --- versioning ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able description a checkpoint stores, to refuse a mismatching tokenizer later."""
        return {"version": self.VERSION, "grid": GRID, "vocab_size": self.vocab_size,
                "tokens": list(_VOCAB.names[:self.vocab_size])}

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        version = d.get("version") if isinstance(d, dict) else None
        if version not in VERSIONS:
            raise ValueError(f"the model was made with tokenizer {version!r}, this program knows "
                             f"{', '.join(VERSIONS)}: they are not compatible")
        tok = cls(version)
        if d.get("vocab_size") != tok.vocab_size or ("tokens" in d
                                                      and list(d["tokens"]) != _VOCAB.names[:tok.vocab_size]):
            raise ValueError(f"tokenizer {version!r}: the stored vocabulary differs from this program's "
                             f"({d.get('vocab_size')} vs {tok.vocab_size} tokens)")
        return tok

    # --- encoding ------------------------------------------------------------------------------
    def encode(self, score: Score, *, eos: bool = True, end_tick: int | None = None) -> list[int]:
        return self.encode_with_report(score, eos=eos, end_tick=end_tick)[0]

    def encode_with_report(self, score: Score, *, eos: bool = True,
                           end_tick: int | None = None) -> tuple[list[int], list[str]]:
        """Tokens of `score` (BOS ... EOS) and one line per kind of change the grid or vocabulary forced.

        `end_tick`: write bars at least up to this tick (e.g. a prompt that ends in silence); `eos=False`
        leaves the sequence open for a continuation.
        """
        return _Encoder(self).run(score, eos, end_tick)

    # --- decoding ------------------------------------------------------------------------------
    def decode(self, ids: Iterable) -> tuple[Score, DecodeStats]:
        """Score of the tokens the grammar accepts; never raises. Tick 0 is the first Bar."""
        dec = StreamDecoder(self)
        for t in ids:
            dec.feed(t)
        return dec.score(), dec.stats()

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    def grammar(self, prefix: Iterable[int] = (), instruments=None, playable: bool = False) -> "GrammarState":
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

    def _header(self, g: "GrammarState", ids: list[int], index: int) -> list[int]:
        header = [self.bos_id]
        if g.flat:
            header.append(self.flat_id)
        if g.tempo is not None:
            header.append(self.tempo_id(g.tempo))
        header.append(self.bar_id)
        states_meter = index + 1 < len(ids) and 0 <= ids[index + 1] < self.vocab_size \
            and _KINDS[ids[index + 1]] == TIMESIG
        if g.meter is not None and not states_meter:
            header.append(self.timesig_id(*g.meter))
        return header

    def _mask(self, key: tuple, g: "GrammarState") -> np.ndarray:
        """Allowed ids for a grammar state class, without the position and pitch tokens (added per state)."""
        key = (self.vocab_size,) + key
        mask = _MASK_CACHE.get(key)
        if mask is None:
            mask = np.zeros(self.vocab_size, dtype=bool)
            onset, g._onset = g._onset, {}  # which instruments are full at this onset is not in the key:
            try:  # GrammarState.allowed takes them out per call
                for t in range(self.vocab_size):
                    if _KINDS[t] != POS and _KINDS[t] != PITCH:
                        mask[t] = g.accepts(t)
            finally:
                g._onset = onset
            mask.flags.writeable = False
            _MASK_CACHE[key] = mask
        return mask


_NAME_INDEX = {name: i for i, name in enumerate(_VOCAB.names)}
_MASK_CACHE: dict[tuple, np.ndarray] = {}  # the vocabulary is fixed, so every Tokenizer shares the masks


def _nearest_duration_index(steps: int) -> int:
    i = bisect.bisect_left(DURATION_STEPS, steps)
    if i == len(DURATION_STEPS):
        return i - 1
    if i > 0 and steps - DURATION_STEPS[i - 1] <= DURATION_STEPS[i] - steps:
        return i - 1
    return i


def _to_step(tick: float) -> int:
    """Nearest grid step (halves round up)."""
    return int((tick + STEP_TICKS // 2) // STEP_TICKS)


class _Encoder:
    """One encoding run: quantise to the grid, lay out bars, write tokens, count what changed."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.counts: dict[str, int] = {}
        self.details: dict[str, str] = {}

    def note_issue(self, key: str, detail: str = "") -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if detail and key not in self.details:
            self.details[key] = detail

    def report(self) -> list[str]:
        out = []
        for key, n in self.counts.items():
            detail = self.details.get(key)
            out.append(f"{n} {key}" + (f" (first: {detail})" if detail else ""))
        return out

    def run(self, score: Score, eos: bool, end_tick: int | None) -> tuple[list[int], list[str]]:
        tempos = self.tempo_steps(score)
        meters = self.meter_steps(score)
        notes = self.unique_notes(self.note_steps(score))
        last = max([0] + [n[0] for n in notes] + [s for s, _ in tempos] + [s for s, _ in meters])
        if end_tick is not None and end_tick > 0:
            last = max(last, _to_step(end_tick) - 1)
        bars = self.lay_out_bars(meters, last)
        return self.write(bars, tempos, notes, eos), self.report()

    def tempo_steps(self, score: Score) -> list[tuple[int, int]]:
        by_step: dict[int, int] = {}
        for t in score.tempos:
            bpm = min(max(round(t.bpm), TEMPO_MIN), TEMPO_MAX)
            if bpm != t.bpm:
                self.note_issue("tempi changed to a whole BPM in 20..300", f"{t.bpm} -> {bpm}")
            if t.tick % STEP_TICKS:
                self.note_issue("tempo changes moved to the grid", f"tick {t.tick}")
            by_step[max(_to_step(t.tick), 0)] = bpm
        out: list[tuple[int, int]] = []
        for step in sorted(by_step):
            if not out or by_step[step] != out[-1][1]:
                out.append((step, by_step[step]))
        if not out or out[0][0] != 0:  # Score guarantees a tempo at 0; be safe for hand-made ones
            out.insert(0, (0, out[0][1] if out else 120))
        return out

    def meter_steps(self, score: Score) -> list[tuple[int, tuple[int, int]]]:
        by_step: dict[int, tuple[int, int]] = {}
        for ts in score.time_signatures:
            meter = supported_meter(ts.numerator, ts.denominator)
            if meter != (ts.numerator, ts.denominator):
                self.note_issue("unsupported meters replaced", f"{ts.numerator}/{ts.denominator} -> "
                                                               f"{meter[0]}/{meter[1]} at tick {ts.tick}")
            if ts.tick % STEP_TICKS:
                self.note_issue("meter changes moved to the grid", f"tick {ts.tick}")
            by_step[max(_to_step(ts.tick), 0)] = meter
        out: list[tuple[int, tuple[int, int]]] = []
        for step in sorted(by_step):
            if not out or by_step[step] != out[-1][1]:
                out.append((step, by_step[step]))
        if not out or out[0][0] != 0:
            out.insert(0, (0, out[0][1] if out else (4, 4)))
        return out

    def note_steps(self, score: Score) -> list[tuple[int, int, int, int, tuple[int, bool]]]:
        """(onset step, duration token index, pitch, velocity level, instrument) of every note."""
        out = []
        off_grid = 0
        for n in score.notes:
            start = n.start
            if start < 0:
                self.note_issue("notes before tick 0 moved to 0", f"tick {start}")
                start = 0
            onset = _to_step(start)
            steps = max(_to_step(start + n.duration) - onset, 1)
            if start % STEP_TICKS or n.duration % STEP_TICKS:
                off_grid += 1
            d = _nearest_duration_index(steps)
            if DURATION_STEPS[d] != steps:
                key = "notes longer than 64 beats shortened" if steps > DURATION_STEPS[-1] \
                    else "long notes rounded to a coarser duration"
                self.note_issue(key, f"{steps} steps -> {DURATION_STEPS[d]}")
            pitch = n.pitch
            if not 0 <= pitch <= 127:
                self.note_issue("pitches outside 0..127 clamped", str(pitch))
                pitch = min(max(pitch, 0), 127)
            instrument = (0, True) if n.drum else (min(max(n.program, 0), 127), False)
            out.append((onset, d, pitch, velocity_level(n.velocity), instrument))
        if off_grid:
            self.counts[f"notes moved to the 1/{GRID}-beat grid"] = off_grid
        return out

    def unique_notes(self, notes: list) -> list:
        """One note per (onset, instrument, pitch), the longest; at most MAX_ONSET_NOTES per instrument and
        onset (the lowest and highest kept first, then inward), which is what the grammar accepts."""
        by_key: dict[tuple, tuple] = {}
        for n in notes:
            key = (n[0], n[4], n[2])
            kept = by_key.get(key)
            if kept is None or (n[1], n[3]) > (kept[1], kept[3]):
                if kept is not None:
                    self.note_issue("notes sounding twice at one onset merged (the longest kept)",
                                    f"pitch {n[2]} at step {n[0]}")
                by_key[key] = n
            else:
                self.note_issue("notes sounding twice at one onset merged (the longest kept)",
                                f"pitch {n[2]} at step {n[0]}")
        chords: dict[tuple, list] = {}
        for n in by_key.values():
            chords.setdefault((n[0], n[4]), []).append(n)
        out = []
        for chord in chords.values():
            if len(chord) > MAX_ONSET_NOTES:
                chord.sort(key=operator.itemgetter(2))
                keep = sorted(range(len(chord)), key=lambda i: min(i, len(chord) - 1 - i))[:MAX_ONSET_NOTES]
                self.note_issue(f"chords over {MAX_ONSET_NOTES} notes of one instrument thinned",
                                f"{len(chord)} notes at step {chord[0][0]}")
                chord = [chord[i] for i in sorted(keep)]
            out += chord
        out.sort(key=lambda n: (n[0], n[4], n[2]))
        return out

    def lay_out_bars(self, meters, last_step: int) -> list[tuple[int, int, tuple[int, int]]]:
        """(start step, length, meter) of bars tiling 0..last_step. A meter change inside a bar cuts that
        bar short; the cut bar gets the meter of its actual length."""
        bars = []
        start, m = 0, 0
        while True:
            while m + 1 < len(meters) and meters[m + 1][0] <= start:
                m += 1
            meter = meters[m][1]
            length = meter_steps(meter)
            if m + 1 < len(meters) and meters[m + 1][0] < start + length:
                short = meters[m + 1][0] - start
                meter = _meter_for_steps(short)
                length = meter_steps(meter)
                self.note_issue("bars cut short by a meter change written with their own meter",
                                f"{short} steps at step {start} -> {meter[0]}/{meter[1]}")
            bars.append((start, length, meter))
            start += length
            if start > last_step:
                return bars

    def write(self, bars, tempos, notes, eos: bool) -> list[int]:
        tok = self.tok
        pos0, pitch0, dur0, vel0 = _OFF[POS], _OFF[PITCH], _OFF[DURATION], _OFF[VELOCITY]
        tempo_at = {s: bpm for s, bpm in tempos[1:]}
        at_onset: dict[int, list] = {}
        for n in notes:
            at_onset.setdefault(n[0], []).append(n)
        onsets = sorted(set(at_onset) | set(tempo_at))
        ids = [tok.bos_id]
        if tok.infill and notes and len({n[3] for n in notes}) == 1:
            ids.append(tok.flat_id)
        ids.append(tok.tempo_id(tempos[0][1]))
        j = 0
        prev_meter = None
        for start, length, meter in bars:
            ids.append(tok.bar_id)
            if meter != prev_meter:
                ids.append(tok.timesig_id(*meter))
                prev_meter = meter
            instrument = velocity = None
            velocities: dict[tuple[int, bool], int] = {}  # level of each instrument's last note in the bar
            while j < len(onsets) and onsets[j] < start + length:
                step = onsets[j]
                j += 1
                ids.append(pos0 + step - start)
                if step in tempo_at:
                    ids.append(tok.tempo_id(tempo_at[step]))
                for group in _instrument_groups(at_onset.get(step, ()), instrument):
                    for _, d, pitch, level, inst in group:
                        if inst != instrument:
                            ids.append(tok.instrument_id(*inst))
                            instrument = inst
                        if velocities.get(inst, velocity) != level:
                            ids.append(vel0 + level)
                        velocities[inst] = velocity = level
                        ids.append(pitch0 + pitch)
                        ids.append(dur0 + d)
        if eos:
            ids.append(tok.eos_id)
        return ids


def _instrument_groups(notes, current):
    """Notes of one onset grouped by instrument, pitch ascending; the instrument already in use first, so
    a switch is written only where needed."""
    groups: dict[tuple[int, bool], list] = {}
    for n in notes:
        groups.setdefault(n[4], []).append(n)
    order = sorted(groups, key=lambda inst: (inst != current, inst[1], inst[0]))
    return [sorted(groups[inst], key=lambda n: (n[2], n[1], n[3])) for inst in order]


class GrammarState:
    """Where a token sequence stands in the grammar, and which tokens may come next.

    `allowed()` is a bool mask over the vocabulary (cached per state class; only the position and pitch
    ranges are filled per call); `advance()` moves on and raises ValueError on a token the grammar does not
    allow.
    """

    __slots__ = ("tok", "state", "meter", "bar_steps", "bar_start", "pos", "instrument", "velocity", "pitch",
                 "duration", "tempo", "bars", "flat", "playable", "segment", "fill_bars", "fill_left",
                 "gap_tick", "next_start", "_restriction", "_velocities", "_onset", "_caps", "_ranges")

    def __init__(self, tokenizer: Tokenizer | None = None, instruments=None) -> None:
        self.tok = tokenizer if tokenizer is not None else _default_tokenizer()
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
        k = _KINDS[t]
        s = self.state
        if s == _S_DURATION or s == _S_POS_TEMPO or s == _S_POS:
            if k == PITCH:
                return self._instrument_ok() and self.velocity is not None and self._pitch_ok(_VALUES[t])
            if k == INSTRUMENT:
                return (self._restriction is None or _VALUES[t] in self._restriction) and self._can_start(_VALUES[t])
            if k == VELOCITY:
                return self._instrument_ok() and self._can_start()
            if s == _S_POS:
                return k == TEMPO
            if k == POS:
                return self.pos < _VALUES[t] < self.bar_steps
            return self._bar_may_end(k)
        if s == _S_PITCH:
            return k == DURATION
        if s == _S_INSTRUMENT:
            return k == VELOCITY or (k == PITCH and self.velocity is not None and self._pitch_ok(_VALUES[t]))
        if s == _S_VELOCITY:
            return k == PITCH and self._pitch_ok(_VALUES[t])
        if s == _S_BAR and self.meter is None:
            return k == TIMESIG
        if s == _S_BAR or s == _S_TIMESIG:
            if k == POS:
                return _VALUES[t] < self.bar_steps
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
        mask = self.tok._mask(key, self)
        pos_range = s in _POS_STATES and self.meter is not None
        pitches = inst_ok and self.velocity is not None and (
            s in (_S_POS, _S_POS_TEMPO, _S_DURATION, _S_INSTRUMENT, _S_VELOCITY))
        # instruments that can start no more notes at this onset (a chord full, or its top pitch reached)
        full = [inst for inst in self._onset if not self._can_start(inst)]
        if pos_range or pitches or full:
            mask = mask.copy()
        for inst in full:
            mask[_DRUMS_ID if inst[1] else _OFF[INSTRUMENT] + inst[0]] = False
            if inst == self.instrument:
                mask[_OFF[VELOCITY]:_OFF[VELOCITY] + VELOCITY_LEVELS] = False
        if pos_range:
            mask[_OFF[POS] + self.pos + 1:_OFF[POS] + self.bar_steps] = True
        if pitches:
            lo, hi = self._pitch_range()
            if lo <= hi:
                mask[_OFF[PITCH] + lo:_OFF[PITCH] + hi + 1] = True
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

    def _new_segment(self, state: int) -> None:
        """A Gap or Fill: tempo and meter are restated next, and nothing of the last bar carries over."""
        self.meter = None
        self.pos = -1
        self.instrument = self.velocity = None
        self._velocities = {}
        self._onset = {}
        self.state = state

    def _apply(self, t: int) -> None:
        k = _KINDS[t]
        v = _VALUES[t]
        if k == PITCH:
            self.pitch = v
            self._velocities[self.instrument] = self.velocity  # also when inherited from another instrument
            done = self._onset.get(self.instrument)
            self._onset[self.instrument] = (v, done[1] + 1 if done else 1)
            self.state = _S_PITCH
        elif k == DURATION:
            self.duration = v
            self.state = _S_DURATION
        elif k == POS:
            self.pos = v
            self._onset = {}
            self.state = _S_POS
        elif k == INSTRUMENT:
            if self.state == _S_PART:  # the part an infill writes: the middle has only this instrument
                self._restriction = frozenset((v,))
                self.state = _S_PART_INSTRUMENT
                return
            self.instrument = v
            self.velocity = self._velocities.get(v, self.velocity)
            self.state = _S_INSTRUMENT
        elif k == VELOCITY:
            self.velocity = self._velocities[self.instrument] = v
            self.state = _S_VELOCITY
        elif k == BAR:
            if self.next_start is not None:
                self.bar_start, self.next_start = self.next_start, None
            elif self.bars:
                self.bar_start += self.bar_steps * STEP_TICKS
            self.bars += 1
            if self.fill_left is not None:
                self.fill_left -= 1
            self.pos = -1
            self.instrument = self.velocity = None  # every bar states them again: bars are self-contained
            self._velocities = {}
            self._onset = {}
            self.state = _S_BAR
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
            # the missing bars take the meter in force; the context after them starts past them
            self.gap_tick = self.bar_start + self.bar_steps * STEP_TICKS if self.bars else 0
            self.fill_bars = v
            self.next_start = self.gap_tick + v * self.bar_steps * STEP_TICKS
            self.segment = _SEG_AFTER
            self._new_segment(_S_GAP)
        elif k == PART:
            self.gap_tick = 0  # the middle covers the context's bars, from the first
            self.fill_bars = self.bars
            self.state = _S_PART
        elif k == FILL:
            self.segment = _SEG_MIDDLE
            self.fill_left = self.fill_bars
            self.next_start = self.gap_tick
            self._new_segment(_S_FILL)

    def copy(self) -> "GrammarState":
        g = GrammarState.__new__(GrammarState)
        for name in GrammarState.__slots__:
            setattr(g, name, getattr(self, name))
        g._velocities = dict(self._velocities)
        g._onset = dict(self._onset)
        return g


class StreamDecoder:
    """Incremental decoding: `feed` one id at a time, get each note as soon as its duration arrives.

    Ids the grammar does not accept are skipped and counted in `invalid`; PAD is skipped silently.
    Tempo and meter changes accumulate in `tempos` and `time_signatures` (absolute ticks).
    """

    def __init__(self, tokenizer: Tokenizer | None = None) -> None:
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
        if not g.accepts(t):
            if t != _OFF[PAD]:
                self.invalid += 1
            return []
        g._apply(t)
        k = _KINDS[t]
        if k == DURATION:
            program, drum = g.instrument
            note = Note(g.position, g.duration * STEP_TICKS, g.pitch, level_velocity(g.velocity), program, drum)
            self.notes.append(note)
            return [note]
        if k == TEMPO:
            if g.state == _S_HEAD_TEMPO:  # stated before a bar: it holds from that bar's start
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
        incomplete = 1 if g.state in (_S_PITCH, _S_VELOCITY, _S_INSTRUMENT) else 0
        return DecodeStats(self.invalid, incomplete, len(self.notes), g.bars, g.finished)


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


_DEFAULT: Tokenizer | None = None


def _default_tokenizer() -> Tokenizer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Tokenizer()
    return _DEFAULT

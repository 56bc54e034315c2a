"""The vocabulary: the grid, the token kinds and their values, and the versioned id layout.

Every id here is saved in checkpoints: blocks are only ever appended (version 2 adds FLAT..FILL after version
1's blocks), never reordered. This module knows nothing of the grammar, the encoder or the decoders.
"""
from __future__ import annotations

import bisect

import numpy as np

from core.score import TICKS_PER_BEAT

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
    """The velocity level (0..VELOCITY_LEVELS - 1) a MIDI velocity is written as."""
    return (min(max(int(velocity), 1), 127) - 1) // 4


def level_velocity(level: int) -> int:
    """The MIDI velocity a velocity level decodes to."""
    return min(4 * level + 4, 127)


def meter_for_steps(steps: int) -> tuple[int, int]:
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
    return meter_for_steps(round(steps))


def nearest_duration_index(steps: int) -> int:
    """Index into DURATION_STEPS of the duration nearest to `steps` (ties to the shorter; clamped to the
    longest)."""
    i = bisect.bisect_left(DURATION_STEPS, steps)
    if i == len(DURATION_STEPS):
        return i - 1
    if i > 0 and steps - DURATION_STEPS[i - 1] <= DURATION_STEPS[i] - steps:
        return i - 1
    return i


_METER_INDEX = {m: i for i, m in enumerate(METERS)}


class TokenLayout:
    """Token names, kinds and values of every id of the latest version, laid out in blocks of one kind each."""

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


# One layout for every version (version 1 is its first v1_size ids). The grammar, the encoder and the
# decoders index these lists per token, so they are plain module names rather than method calls.
LAYOUT = TokenLayout()
KIND_OF = LAYOUT.kinds  # id -> kind code (PAD..FILL)
VALUE_OF = LAYOUT.values  # id -> value (see Vocabulary.value)
FIRST_ID = LAYOUT.offset  # kind code -> the first id of its block
DRUMS_ID = FIRST_ID[INSTRUMENT] + 128
_NAME_INDEX = {name: i for i, name in enumerate(LAYOUT.names)}

VERSIONS = ("rwkvmusic-tok-1", "rwkvmusic-tok-2")
LATEST = VERSIONS[-1]


class Vocabulary:
    """One version of the vocabulary: its size, the ids of each token, and the description a checkpoint keeps.

    `Vocabulary()` is the latest version; `Vocabulary("rwkvmusic-tok-1")` (or a checkpoint's `from_dict`)
    gives version 1: the same ids without the Flat and infill tokens, for the models made with it."""

    GRID = GRID
    VERSION = LATEST  # of this instance: set in __init__

    def __init__(self, version: str = LATEST) -> None:
        if version not in VERSIONS:
            raise ValueError(f"unknown tokenizer version {version!r}: this program knows {', '.join(VERSIONS)}")
        self.VERSION = version
        self.vocab_size = LAYOUT.v1_size if version == VERSIONS[0] else LAYOUT.size
        self.pad_id, self.bos_id, self.eos_id, self.bar_id = (FIRST_ID[k] for k in (PAD, BOS, EOS, BAR))
        self.infill = self.vocab_size > LAYOUT.v1_size
        self.flat_id = FIRST_ID[FLAT] if self.infill else None
        self.part_id = FIRST_ID[PART] if self.infill else None
        self.fill_id = FIRST_ID[FILL] if self.infill else None

    # --- names, kinds, values --------------------------------------------------------------------
    def token_name(self, i: int) -> str:
        return LAYOUT.names[i] if 0 <= i < self.vocab_size else f"<invalid {i}>"

    def token_id(self, name: str) -> int:
        return _NAME_INDEX[name]

    def kind(self, i: int) -> str:
        """One of KIND_NAMES, or "invalid" for an id outside the vocabulary."""
        return KIND_NAMES[KIND_OF[i]] if 0 <= i < self.vocab_size else "invalid"

    def value(self, i: int):
        """The token's value: meter (n, d), position step, BPM, (program, drum), level, pitch, duration steps."""
        return VALUE_OF[i]

    def is_note_token(self, i: int) -> bool:
        return 0 <= i < self.vocab_size and KIND_OF[i] in NOTE_KINDS

    @property
    def kind_ids(self) -> np.ndarray:
        """Kind code (PAD..FILL) of every id, e.g. to weight or mask a loss by kind."""
        return LAYOUT.kind_array[:self.vocab_size]

    def ids_of_kind(self, kind: str) -> range:
        k = KIND_NAMES.index(kind)
        start = min(FIRST_ID[k], self.vocab_size)
        return range(start, min(FIRST_ID[k + 1] if k + 1 in FIRST_ID else LAYOUT.size, self.vocab_size))

    # --- ids of values -----------------------------------------------------------------------------
    def gap_id(self, bars: int) -> int:
        if not self.infill:
            raise ValueError(f"tokenizer {self.VERSION} has no infill tokens")
        if not 1 <= bars <= MAX_GAP_BARS:
            raise ValueError(f"a gap of {bars} bars: infill covers 1..{MAX_GAP_BARS} bars")
        return FIRST_ID[GAP] + bars - 1

    def timesig_id(self, numerator: int, denominator: int) -> int:
        return FIRST_ID[TIMESIG] + _METER_INDEX[(numerator, denominator)]

    def pos_id(self, step: int) -> int:
        if not 0 <= step < MAX_BAR_STEPS:
            raise ValueError(f"position {step} outside 0..{MAX_BAR_STEPS - 1}")
        return FIRST_ID[POS] + step

    def tempo_id(self, bpm: float) -> int:
        return FIRST_ID[TEMPO] + min(max(round(bpm), TEMPO_MIN), TEMPO_MAX) - TEMPO_MIN

    def instrument_id(self, program: int, drum: bool = False) -> int:
        return DRUMS_ID if drum else FIRST_ID[INSTRUMENT] + program

    def velocity_id(self, velocity: int) -> int:
        return FIRST_ID[VELOCITY] + velocity_level(velocity)

    def pitch_id(self, pitch: int) -> int:
        return FIRST_ID[PITCH] + pitch

    def duration_id(self, steps: int) -> int:
        """The duration token nearest to `steps` grid steps (clamped to the longest)."""
        return FIRST_ID[DURATION] + nearest_duration_index(steps)

    # --- versioning ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able description a checkpoint stores, to refuse a mismatching tokenizer later."""
        return {"version": self.VERSION, "grid": GRID, "vocab_size": self.vocab_size,
                "tokens": list(LAYOUT.names[:self.vocab_size])}

    @classmethod
    def from_dict(cls, d: dict):
        """The version a checkpoint's `to_dict` describes, as an instance of `cls`; ValueError if this program's
        vocabulary of that version differs from the stored one."""
        version = d.get("version") if isinstance(d, dict) else None
        if version not in VERSIONS:
            raise ValueError(f"the model was made with tokenizer {version!r}, this program knows "
                             f"{', '.join(VERSIONS)}: they are not compatible")
        tok = cls(version)
        if d.get("vocab_size") != tok.vocab_size or ("tokens" in d
                                                      and list(d["tokens"]) != LAYOUT.names[:tok.vocab_size]):
            raise ValueError(f"tokenizer {version!r}: the stored vocabulary differs from this program's "
                             f"({d.get('vocab_size')} vs {tok.vocab_size} tokens)")
        return tok

"""The data model's small values: Note, TempoChange, TimeSignature, the tick resolution and pitch names.

They sit below core.score (the document) so that modules the document uses, such as core.meter, can speak
them without importing the document back.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TICKS_PER_BEAT = 480  # fine enough for any grid the tokenizer or the GUI snaps to
DEFAULT_BPM = 120.0
DRUM_CHANNEL = 9  # MIDI channel 10, zero-based
MIN_NOTE_TICKS = TICKS_PER_BEAT // 32  # what the tokenizer's view gives a zero-length note (a 1/128 note)
PEDAL_CONTROLLER = 64
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the one spelling


def pitch_name(pitch: int) -> str:
    """The name of a MIDI pitch with its octave, C4 = 60 (scientific pitch notation): "Eb4" for 63."""
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass(slots=True)
class Note:
    start: int  # ticks from the start of the piece
    duration: int  # ticks, >= 1 (0 only for a zero-length note read from a file)
    pitch: int  # 0..127
    velocity: int = 80  # 1..127
    program: int = 0  # General MIDI program 0..127 (ignored for drums)
    drum: bool = False
    # The index of the document track the note belongs to, for code that keeps notes in one flat list
    # (the app's document, a clipboard); None: the track of its instrument. Not part of equality.
    track: int | None = field(default=None, compare=False, repr=False)

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def instrument(self) -> tuple[int, bool]:
        """Key that groups notes into tracks: (program, drum); drums always use program 0."""
        return (0, True) if self.drum else (self.program, False)


@dataclass(frozen=True, slots=True)
class TempoChange:
    tick: int
    bpm: float  # quarter notes per minute


@dataclass(frozen=True, slots=True)
class TimeSignature:
    tick: int
    numerator: int
    denominator: int  # a power of two
    # False only for the 4/4 a reader assumes where a file declares no meter: not written back, and the
    # model's view infers the meter instead (core.meter). Not part of equality.
    declared: bool = field(default=True, compare=False, repr=False)

    @property
    def bar_ticks(self) -> int:
        return self.numerator * TICKS_PER_BEAT * 4 // self.denominator

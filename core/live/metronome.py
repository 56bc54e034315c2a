"""The metronome: a click on every beat of the piece's meter (the bar's first beat accented) and a one-bar
count-in before playback starts. Clicks are GM drum notes (woodblocks), so they sound on the built-in synth
and on any GM synth behind a MIDI port, on channel 10 like the piece's drums."""
from __future__ import annotations

from ..arrange import bars_between
from ..score import TICKS_PER_BEAT, Note, Score

ACCENT, BEAT = 76, 77          # GM percussion: hi and low wood block
ACCENT_VELOCITY, BEAT_VELOCITY = 110, 80
CLICK_TICKS = 60               # a click's length: short, whatever the tempo


def _click(tick: int, accent: bool) -> Note:
    return Note(tick, CLICK_TICKS, ACCENT if accent else BEAT, ACCENT_VELOCITY if accent else BEAT_VELOCITY,
                0, True)


def clicks(meta: Score, start: float, end: float) -> list[Note]:
    """A click on each beat in [start, end): the first of each bar accented, following meter changes."""
    notes = []
    for bar in bars_between(meta, start, end):
        bar_end = bar.tick + bar.signature.bar_ticks
        for tick in range(bar.tick, bar_end, bar.beat_ticks):
            if start <= tick < end:
                notes.append(_click(tick, tick == bar.tick))
    return notes


def count_in(meta: Score, tick: float) -> tuple[list[tuple[float, Note]], float]:
    """One bar of clicks before `tick`, in the meter and tempo in force there: ([(seconds before the
    start, click)], the count-in's length in seconds). A start inside a bar still gets a whole bar."""
    at = int(max(0, tick))
    ts = meta.time_signature_at(at)
    beat_ticks = ts.bar_ticks // ts.numerator
    per_tick = 60.0 / meta.tempo_at(at) / TICKS_PER_BEAT
    length = ts.bar_ticks * per_tick
    return [(length - k * beat_ticks * per_tick, _click(0, k == 0)) for k in range(ts.numerator)], length

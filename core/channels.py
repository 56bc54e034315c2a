"""Which MIDI channel each instrument sounds on."""
from __future__ import annotations

from .score import DRUM_CHANNEL, Note


class ChannelMap:
    """Gives each instrument a MIDI channel: drums on channel 10, programs on the other 15 in order."""

    MELODIC = [c for c in range(16) if c != DRUM_CHANNEL]

    def __init__(self):
        self._by_instrument: dict[tuple[int, bool], int] = {}

    def channel(self, note: Note) -> tuple[int, bool]:
        """(channel, is_new): is_new when the channel needs its program change first."""
        key = note.instrument
        if key in self._by_instrument:
            return self._by_instrument[key], False
        if note.drum:
            ch = DRUM_CHANNEL
        else:
            melodic = sum(1 for (_, d) in self._by_instrument if not d)
            ch = self.MELODIC[melodic % len(self.MELODIC)]  # beyond 15 programs channels are shared
        self._by_instrument[key] = ch
        return ch, not note.drum

"""Note pairing: which note-off ends which note-on, per channel and key, first in first out.

A note-off ends the OLDEST sounding note of its key (with last in first out, the common "new note-on,
then the old note's note-off at the same tick" would give the new note zero length). A note-on with
velocity 0 is a note-off (the reader passes it as one); All Notes Off ends every note of a channel; a note
struck twice at one tick sounds once. A note-off that finds no sounding note of its key is ignored: it
never cuts a later note short.

One ambiguity is resolved by what follows. Writers that sort note-offs first at each tick write a
zero-length note (a grace note) as "off, then on" at one tick, and a run of them as off, on, off, on...
with no note-off after the last; a note-on that follows a stray note-off and is then released normally is
a real note. So a note-on right after a stray note-off opens a chain (continued by each note-off
immediately followed by a note-on of the key at its tick), and the chain's notes become zero-length only
if its last note is never released, or is struck again before any note-off.

Files are paired here through core.midi.reader, and so is what a player plays (core.live.MidiCapture
reads it as a file): one rule for both.
"""
from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Any, Callable

# (start, end, channel, pitch, velocity) -> the note kept (its `end` is set later in a zero-length run), or
# None once the reader keeps no more notes
AddNote = Callable[[int, int, int, int, int], Any]
Count = Callable[..., None]  # (verb, what, n=1, altered=True): counted into a line of the read report


class NotePairing:
    """One track's sounding notes: note-ons and note-offs in, paired notes out through `add_note`; what
    was ignored or changed goes to `count` (the reader's report)."""

    def __init__(self, add_note: AddNote, count: Count) -> None:
        self._add_note, self._count = add_note, count
        # key -> [(tick, velocity, chain or None)]; a chain lists the notes (already ended) before the entry
        self.sounding: dict[tuple[int, int], deque[tuple[int, int, list | None]]] = defaultdict(deque)
        self.stray_offs: dict[tuple[int, int], int] = {}  # key -> tick of a note-off that found nothing sounding
        self.chain_ends: dict[tuple[int, int], tuple[int, list]] = {}  # key -> (tick, chain) of a chain note's off
        self.spare_offs: Counter[tuple[int, int]] = Counter()  # note-offs owed by dropped duplicate note-ons

    def note_on(self, channel: int, pitch: int, velocity: int, tick: int) -> None:
        key = (channel, pitch)
        queue = self.sounding[key]
        if queue and queue[-1][0] == tick and queue[-1][2] is None:  # struck twice at once: sounds once
            self._count("dropped", "duplicate note-ons (same key, same tick)")
            self.spare_offs[key] += 1
            return
        if any(chain is not None for _, _, chain in queue):  # a chain struck again before any note-off
            for start, chain_velocity, chain in queue:
                if chain is not None:
                    self._zero_length_chain(chain, start, channel, pitch, chain_velocity)
            queue = self.sounding[key] = deque(entry for entry in queue if entry[2] is None)
        if queue:
            self._count("paired first in, first out:", "notes struck again while sounding", altered=False)
        chain = None
        if self.stray_offs.pop(key, None) == tick:
            chain = []
        elif key in self.chain_ends and self.chain_ends[key][0] == tick:
            chain = self.chain_ends[key][1]
        self.chain_ends.pop(key, None)
        queue.append((tick, velocity, chain))

    def note_off(self, channel: int, pitch: int, tick: int) -> None:
        key = (channel, pitch)
        queue = self.sounding.get(key)
        if queue:
            start, velocity, chain = queue.popleft()
            note = self._add_note(start, tick, channel, pitch, velocity)
            if chain is not None and note is not None:
                chain.append(note)
                self.chain_ends[key] = (tick, chain)
            else:
                self.chain_ends.pop(key, None)
        elif self.spare_offs[key]:  # the note-off of a dropped duplicate
            self.spare_offs[key] -= 1
        else:  # nothing sounds: ignored (remembered only to recognise an "off, then on" zero-length note)
            self.stray_offs[key] = tick
            self._count("ignored", "note-offs without a note-on", altered=False)

    def all_notes_off(self, channel: int, tick: int) -> None:
        """CC120 / CC123: every note sounding on the channel ends."""
        for (ch, pitch), queue in self.sounding.items():
            while ch == channel and queue:
                start, velocity, _ = queue.popleft()
                self._add_note(start, tick, ch, pitch, velocity)
            self.chain_ends.pop((ch, pitch), None)

    def close(self, tick: int) -> None:
        """At the track's end: notes still sounding end there; an unfinished run of zero-length notes ends
        as one."""
        leftover = 0
        for (channel, pitch), queue in self.sounding.items():
            for start, velocity, chain in queue:
                if chain is not None:  # a run of "off, then on" with no off after the last on
                    self._zero_length_chain(chain, start, channel, pitch, velocity)
                else:
                    leftover += 1
                    self._add_note(start, tick, channel, pitch, velocity)
        if leftover:
            self._count("closed", "notes never released, at their track's end", leftover)

    def _zero_length_chain(self, chain: list, start: int, channel: int, pitch: int, velocity: int) -> None:
        """A run of notes written "off, then on": each note-off was the next note's own, the first one,
        which looked stray, included; every note of the run has zero length."""
        self._count("ignored", "note-offs without a note-on", -1, altered=False)
        for note in chain:
            note.end = note.start
        self._add_note(start, start, channel, pitch, velocity)

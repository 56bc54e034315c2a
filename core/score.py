"""The shared data model: the document (tracks of notes and other events, the tempo map and the meter)
and the tokenizer's view of it.

Every layer (MIDI files, tokenizer, generation, live output, the piano roll) speaks this.
Time is measured in ticks of TICKS_PER_BEAT per quarter note ("beat"); seconds are derived
from the tempo map only where something must happen in real time.

The document is the user's file: each `Track` keeps its name, channel, program, its notes as written
(durations as the keys were held) and every other event (controllers, the sustain pedal, pitch bend,
aftertouch, text, markers, lyrics...) as MIDI bytes that are written back unchanged. `Score.notes` is
the tokenizer's view: the notes of every track in one list (merged by instrument), with the sustain pedal
folded into their durations and zero-length notes given MIN_NOTE_TICKS. Edit tracks, never that view.
`Score.token_view()` is what the model reads; where core.meter moves its notes onto the tokenizer's grid,
the view's ticks are the document's plus `view_shift`, and `to_document` / `from_document` map between them.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Iterable

# the values of core.notes are the data model's too: callers import them from here (noqa: re-exported)
from .notes import (DEFAULT_BPM, DRUM_CHANNEL, MIN_NOTE_TICKS, PEDAL_CONTROLLER,  # noqa: F401
                    PITCH_CLASS_NAMES, TICKS_PER_BEAT, Note, TempoChange, TimeSignature, pitch_name)


@dataclass(frozen=True, slots=True)
class Event:
    """A track event other than a note, kept as its MIDI bytes and written back unchanged: a channel
    message (status byte, data bytes), a meta event (0xFF, type, payload) or a system exclusive message
    (0xF0 or 0xF7, payload). Tempo and time signature meta events live in the Score's maps instead."""
    tick: int
    data: bytes

    @property
    def channel(self) -> int | None:
        return self.data[0] & 0x0F if self.data[0] < 0xF0 else None

    @property
    def kind(self) -> int:
        """0x80..0xE0 for channel messages (status without the channel), else 0xFF or 0xF0 / 0xF7."""
        return self.data[0] & 0xF0 if self.data[0] < 0xF0 else self.data[0]

    @property
    def meta_type(self) -> int | None:
        return self.data[1] if self.data[0] == 0xFF else None

    @property
    def payload(self) -> bytes:
        return self.data[2:] if self.data[0] == 0xFF else self.data[1:]

    def is_controller(self, number: int) -> bool:
        return self.kind == 0xB0 and self.data[1] == number

    @classmethod
    def meta(cls, tick: int, meta_type: int, payload: bytes) -> "Event":
        return cls(tick, bytes((0xFF, meta_type)) + payload)


TRACK_NAME = 0x03  # meta event type


@dataclass(slots=True)
class Track:
    """One track of the document: its notes and every other event of the file's track."""
    name: str = ""
    channel: int | None = None  # the channel its notes sound on; None: the writer picks one
    program: int = 0  # GM program at the track's start (each note carries the program in force at it)
    drum: bool = False
    notes: list[Note] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # in order; a track name meta among them is kept as is
    end: int = 0  # tick of the track's end (0: right after its last event)

    @property
    def instrument(self) -> tuple[int, bool]:
        return (0, True) if self.drum else (self.program, False)

    @property
    def label(self) -> str:
        """The name to show: the track's own, else its instrument's."""
        return self.name or ("Drums" if self.drum else GM_PROGRAM_NAMES[self.program])

    def copy(self, notes: bool = True) -> "Track":
        return Track(self.name, self.channel, self.program, self.drum,
                     [replace(n) for n in self.notes] if notes else [], list(self.events), self.end)


class Score:
    """The document: tracks, the tempo map and the meter; `notes` is the tokenizer's view (see the module).

    Score(notes, tempos, time_signatures) puts the notes into one track per instrument. With `tracks`,
    those tracks are the document, and `notes` are added to them (see add_notes). The Score owns the
    Note and Track objects it is given."""

    def __init__(self, notes: Iterable[Note] = (), tempos: list[TempoChange] | None = None,
                 time_signatures: list[TimeSignature] | None = None, *, tracks: list[Track] | None = None):
        self._tracks: list[Track] = list(tracks) if tracks is not None else []
        # A token view's ticks are the document's plus this (core.meter: the music's grid put on the
        # tokenizer's); 0 for a document and for a view of a file on its grid.
        self.view_shift = 0
        self.tempos = list(tempos) if tempos is not None else [TempoChange(0, DEFAULT_BPM)]
        self.time_signatures = list(time_signatures) if time_signatures is not None else [TimeSignature(0, 4, 4)]
        self.add_notes(notes)
        self.normalize()

    def __repr__(self) -> str:
        return (f"Score({len(self._tracks)} tracks, {sum(len(t.notes) for t in self._tracks)} notes, "
                f"tempos={self.tempos!r}, time_signatures={self.time_signatures!r})")

    # --- the document ----------------------------------------------------------------------
    def tracks(self, include_empty: bool = False) -> list[Track]:
        """The tracks that hold notes (with `include_empty`, every track, e.g. a conductor), in file order.
        These are the Score's own Track objects: editing them edits the Score."""
        return [t for t in self._tracks if include_empty or t.notes]

    def add_notes(self, notes: Iterable[Note]) -> None:
        """Put each note in a track: the one `note.track` names, if that track can sound the note; else
        the first track of its instrument that holds notes; else a new track of its instrument (added
        after the others, drums last). Notes that the model writes into a piece take this path and never
        disturb others (a conductor or other track without notes never receives any)."""
        programs_on: dict[int, set[int]] = defaultdict(set)  # programs a track's channel is switched to
        for t in self._tracks:
            programs_on[t.channel].add(t.program)
            for e in t.events:
                if e.kind == 0xC0:
                    programs_on[e.channel].add(e.data[1])
        touched: dict[int, Track] = {}
        unplaced = []
        for n in notes:  # first the notes that name their track, so that "holds notes" is known below
            hinted = self._tracks[n.track] if n.track is not None and 0 <= n.track < len(self._tracks) else None
            if hinted is not None and hinted.drum == n.drum and (n.drum or n.program == hinted.program or (
                    hinted.channel is not None and n.program in programs_on[hinted.channel])):
                hinted.notes.append(n)
                touched[id(hinted)] = hinted
            else:
                unplaced.append(n)
        new: dict[tuple[int, bool], Track] = {}
        for n in unplaced:
            track = new.get(n.instrument) or next(
                (t for t in self._tracks if t.notes and t.instrument == n.instrument), None)
            if track is None:
                program, drum = n.instrument
                track = new[n.instrument] = Track("Drums" if drum else GM_PROGRAM_NAMES[program], None, program, drum)
            track.notes.append(n)
            touched[id(track)] = track
        for track in touched.values():
            track.notes.sort(key=lambda n: (n.start, n.pitch, n.duration))
        self._tracks += [new[k] for k in sorted(new, key=lambda k: (k[1], k[0]))]

    def document_notes(self) -> list[Note]:
        """Copies of every track's notes as written in the file, each naming its track (Note.track): with
        `skeleton()`, what the app's document holds; Score(notes, ..., tracks=skeleton) puts it back."""
        return [replace(n, track=i) for i, t in enumerate(self._tracks) for n in t.notes]

    def skeleton(self) -> list[Track]:
        """Copies of every track without its notes."""
        return [t.copy(notes=False) for t in self._tracks]

    # --- the tokenizer's view ------------------------------------------------------------------
    @property
    def notes(self) -> list[Note]:
        """Every track's notes in one list, as the tokenizer sees them: sustain pedal folded into the
        durations, zero-length notes at MIN_NOTE_TICKS (copies where changed). Computed on each access:
        edit the tracks, not this list."""
        return tokenizer_notes(self._tracks)[0]

    def token_view(self, infer_meter: bool = True) -> "Score":
        """The Score the tokenizer sees: `notes` in one track per instrument, the tempo map and meter,
        no other events (so that slicing it keeps pedal-folded durations whole).

        Where the declared meter cannot be the music's (a bar line on every beat as 1/4 or 1/8 throughout,
        no meter in the file, or a performance whose beats fall between the file's), the view has the meter
        and downbeat core.meter infers from the notes instead (`infer_meter=False`: the declared one, as
        read). Where, besides, the notes are quantised to a 16th grid of their own off the file's, the view
        moves every note and every tempo change after tick 0 later by `view_shift` (< a 16th) to put that
        grid on the tokenizer's; map ticks back with `to_document`."""
        notes = [replace(n, track=None) for n in self.notes]
        time_signatures, shift = list(self.time_signatures), 0
        if infer_meter:
            from .meter import model_meter  # here, not above: it loads numpy, which the real-time layer avoids
            guess = model_meter(time_signatures, notes)
            if guess is not None:
                time_signatures, shift = guess.time_signatures(), guess.shift
        tempos = [replace(t, tick=t.tick + shift) if t.tick > 0 else t for t in self.tempos]
        view = Score([replace(n, start=n.start + shift) for n in notes] if shift else notes, tempos, time_signatures)
        view.view_shift = shift
        return view

    # --- a view's ticks and the document's: the one place that applies view_shift ----------------------
    def from_document(self, tick: int) -> int:
        """Where tick `tick` of the document lies in this view."""
        return tick + self.view_shift

    def to_document(self, tick: int) -> int:
        """Where tick `tick` of this view lies in the document (the view's first `view_shift` ticks, before
        the document's start, at its start)."""
        return max(0, tick - self.view_shift)

    def note_from_document(self, note: Note) -> Note:
        """A note of the document as it lies in this view (the same object when the view is not shifted)."""
        return replace(note, start=note.start + self.view_shift) if self.view_shift else note

    def note_to_document(self, note: Note) -> Note:
        """A note of this view (one the model wrote) placed in the document: it ends where it ended; one
        that would start before the document's start begins there."""
        if not self.view_shift:
            return note
        start = self.to_document(note.start)
        return replace(note, start=start, duration=max(1, note.end - self.view_shift - start))

    # --- structure -----------------------------------------------------------------------
    def normalize(self) -> None:
        """Sort everything, guarantee a tempo and a meter at tick 0, drop duplicate changes."""
        for t in self._tracks:
            t.notes.sort(key=lambda n: (n.start, n.pitch, n.duration))
            t.events.sort(key=lambda e: e.tick)  # stable: events of one tick keep their order
        self.tempos = _dedupe_changes(sorted(self.tempos, key=lambda t: t.tick), TempoChange(0, DEFAULT_BPM),
                                      lambda a, b: a.bpm == b.bpm)
        self.time_signatures = _dedupe_changes(sorted(self.time_signatures, key=lambda t: t.tick),
                                               TimeSignature(0, 4, 4),
                                               lambda a, b: (a.numerator, a.denominator) == (b.numerator, b.denominator))

    @property
    def end_tick(self) -> int:
        return max((n.end for n in self.notes), default=0)

    def copy(self) -> "Score":
        out = Score((), list(self.tempos), list(self.time_signatures), tracks=[t.copy() for t in self._tracks])
        out.view_shift = self.view_shift
        return out

    def slice(self, start: int, end: int) -> "Score":
        """Notes starting in [start, end) and the events in it, shifted to begin at 0, with the tempo, meter,
        program, controllers and pitch bend in force at `start` (each track keeps its place and name)."""
        tracks = []
        for t in self._tracks:
            events = _chased_state(t.events, start) if start > 0 else []
            events += [replace(e, tick=e.tick - start) for e in t.events if start <= e.tick < end]
            tracks.append(Track(t.name, t.channel, t.program, t.drum,
                                [replace(n, start=n.start - start) for n in t.notes if start <= n.start < end],
                                events, max(0, min(t.end, end) - start)))
        tempos = [TempoChange(0, self.tempo_at(start))] + [
            TempoChange(t.tick - start, t.bpm) for t in self.tempos if start < t.tick < end]
        ts0 = self.time_signature_at(start)
        metres = [replace(ts0, tick=0)] + [
            replace(t, tick=t.tick - start) for t in self.time_signatures if start < t.tick < end]
        return Score((), tempos, metres, tracks=tracks)

    # --- tempo map -----------------------------------------------------------------------
    def tempo_at(self, tick: int) -> float:
        i = bisect.bisect_right([t.tick for t in self.tempos], tick) - 1
        return self.tempos[max(i, 0)].bpm

    def seconds_at(self, tick: float) -> float:
        """Seconds from the start of the piece to `tick`, following every tempo change."""
        seconds, prev_tick, bpm = 0.0, 0, self.tempos[0].bpm
        for t in self.tempos[1:]:
            if t.tick >= tick:
                break
            seconds += (t.tick - prev_tick) * 60.0 / (bpm * TICKS_PER_BEAT)
            prev_tick, bpm = t.tick, t.bpm
        return seconds + (tick - prev_tick) * 60.0 / (bpm * TICKS_PER_BEAT)

    def tick_at(self, seconds: float) -> float:
        """Inverse of seconds_at (fractional ticks)."""
        elapsed, prev_tick, bpm = 0.0, 0, self.tempos[0].bpm
        for t in self.tempos[1:]:
            span = (t.tick - prev_tick) * 60.0 / (bpm * TICKS_PER_BEAT)
            if elapsed + span > seconds:
                break
            elapsed += span
            prev_tick, bpm = t.tick, t.bpm
        return prev_tick + (seconds - elapsed) * bpm * TICKS_PER_BEAT / 60.0

    # --- meter ---------------------------------------------------------------------------
    def time_signature_at(self, tick: int) -> TimeSignature:
        i = bisect.bisect_right([t.tick for t in self.time_signatures], tick) - 1
        return self.time_signatures[max(i, 0)]

    def bar_starts(self, until: int | None = None) -> list[int]:
        """Tick of every bar start up to `until` (default: the end of the last note)."""
        until = self.end_tick if until is None else until
        starts: list[int] = []
        sigs = self.time_signatures
        for i, ts in enumerate(sigs):
            stop = sigs[i + 1].tick if i + 1 < len(sigs) else max(until, ts.tick) + 1
            tick = ts.tick
            while tick < stop and tick <= until:
                starts.append(tick)
                tick += ts.bar_ticks
        return starts or [0]

    def bar_at(self, tick: int) -> int:
        """Zero-based index of the bar containing `tick`."""
        return bisect.bisect_right(self.bar_starts(max(tick, 0)), tick) - 1


def tokenizer_notes(tracks: Iterable[Track]) -> tuple[list[Note], int, int]:
    """The notes of all `tracks` as the tokenizer sees them, and how many the sustain pedal lengthened and
    how many zero-length notes were given MIN_NOTE_TICKS.

    The pedal (CC64 >= 64) acts on a channel, whatever track holds it: a note released under it lasts
    until it lifts, or until the same key is struck again on that channel; a pedal never lifted holds
    to the end of the piece. Drums and tracks without a channel ignore it."""
    tracks = list(tracks)
    pedal: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for t in tracks:
        for e in t.events:
            if e.is_controller(PEDAL_CONTROLLER) and len(e.data) > 2:
                pedal[e.channel].append((e.tick, e.data[2] >= 64))
    notes = [n for t in tracks for n in t.notes]
    lengthened = 0
    if pedal:
        on_channel = [(t.channel, n) for t in tracks if t.channel is not None and t.channel != DRUM_CHANNEL
                      for n in t.notes]
        new_ends = _fold_sustain(on_channel, pedal, max((n.end for n in notes), default=0))
        if new_ends:
            lengthened = len(new_ends)
            notes = [replace(n, duration=new_ends[id(n)] - n.start) if id(n) in new_ends else n for n in notes]
    zero = sum(1 for n in notes if n.duration <= 0)
    if zero:
        notes = [replace(n, duration=MIN_NOTE_TICKS) if n.duration <= 0 else n for n in notes]
    notes.sort(key=lambda n: (n.start, n.drum, n.program, n.pitch, n.duration))
    return notes, lengthened, zero


def _fold_sustain(notes: list[tuple[int, Note]], pedal: dict[int, list[tuple[int, bool]]],
                  piece_end: int) -> dict[int, int]:
    """New end (by id of the note) of every (channel, note) released under the pedal."""
    intervals: dict[int, tuple[list[int], list[int]]] = {}  # channel -> (down ticks, up ticks)
    for channel, events in pedal.items():
        downs, ups, down_at = [], [], None
        for tick, down in sorted(events, key=lambda e: e[0]):
            if down and down_at is None:
                down_at = tick
            elif not down and down_at is not None:
                downs.append(down_at)
                ups.append(tick)
                down_at = None
        if down_at is not None:  # never lifted: held to the end of the piece
            downs.append(down_at)
            ups.append(max(piece_end, down_at))
        intervals[channel] = (downs, ups)
    strikes: dict[tuple[int, int], list[int]] = defaultdict(list)
    for channel, n in notes:
        strikes[(channel, n.pitch)].append(n.start)
    for starts in strikes.values():
        starts.sort()
    new_ends: dict[int, int] = {}
    for channel, n in notes:
        if channel not in intervals:
            continue
        downs, ups = intervals[channel]
        i = bisect.bisect_right(downs, n.end) - 1
        if i < 0 or ups[i] <= n.end:
            continue
        starts = strikes[(channel, n.pitch)]
        j = bisect.bisect_right(starts, n.start)
        new_end = min(ups[i], starts[j]) if j < len(starts) else ups[i]
        if new_end > n.end:
            new_ends[id(n)] = new_end
    return new_ends


def _chased_state(events: list[Event], start: int) -> list[Event]:
    """The channel state in force at `start` (the last program, pressure, bend and value of each
    controller before it) as events at tick 0, so that a slice sounds as the piece did there."""
    last: dict[tuple, Event] = {}
    for e in events:
        if e.tick >= start:
            break
        if e.kind == 0xB0:
            if len(e.data) > 2 and e.data[1] < 120:  # mode messages (all notes off...) act at once
                last[(e.kind, e.channel, e.data[1])] = e
        elif e.kind in (0xC0, 0xD0, 0xE0):
            last[(e.kind, e.channel)] = e
    return [Event(0, e.data) for e in sorted(last.values(), key=lambda e: e.tick)]


METER_DENOMINATORS = (1, 2, 4, 8, 16, 32)


def tempo_from(meta: Score, tick: int, bpm: float) -> list[TempoChange]:
    """The tempo map with `bpm` from `tick` (a bar line) up to the next change. A change that repeats the
    tempo before it is dropped, so setting a bar back to the tempo before it removes its change."""
    if not 10 <= bpm <= 1000:
        raise ValueError(f"tempo {bpm:g} BPM is outside 10-1000")
    kept = [t for t in meta.tempos if t.tick != tick] + [TempoChange(max(0, int(tick)), float(bpm))]
    return _dedupe_changes(sorted(kept, key=lambda t: t.tick), TempoChange(0, DEFAULT_BPM),
                           lambda a, b: a.bpm == b.bpm)


def meter_from(meta: Score, tick: int, numerator: int, denominator: int) -> list[TimeSignature]:
    """The meter map with numerator/denominator from `tick` (a bar line) up to the next change; a change
    that repeats the meter before it is dropped. Notes keep their ticks: the bar lines after `tick` move."""
    if denominator not in METER_DENOMINATORS or not 1 <= numerator <= 64:
        raise ValueError(f"{numerator}/{denominator} is not a time signature")
    kept = [t for t in meta.time_signatures if t.tick != tick] + [
        TimeSignature(max(0, int(tick)), int(numerator), int(denominator))]
    return _dedupe_changes(sorted(kept, key=lambda t: t.tick), TimeSignature(0, 4, 4),
                           lambda a, b: (a.numerator, a.denominator) == (b.numerator, b.denominator))


def _dedupe_changes(changes, default, same):
    """Keep the last change at each tick, drop changes that repeat the value in force."""
    by_tick = {}
    for c in changes:
        if c.tick >= 0:
            by_tick[c.tick] = c
    ordered = [by_tick[t] for t in sorted(by_tick)]
    if not ordered or ordered[0].tick != 0:
        first = ordered[0] if ordered else default
        ordered.insert(0, replace(first, tick=0))
    out = [ordered[0]]
    for c in ordered[1:]:
        if not same(c, out[-1]):
            out.append(c)
    return out
GM_PROGRAM_NAMES = [
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel",
    "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ",
    "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica",
    "Tango Accordion", "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar",
    "Guitar Harmonics", "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2", "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani", "String Ensemble 1",
    "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice",
    "Orchestra Hit", "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section",
    "Synth Brass 1", "Synth Brass 2", "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe",
    "English Horn", "Bassoon", "Clarinet", "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle",
    "Shakuhachi", "Whistle", "Ocarina", "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)",
    "Lead 4 (chiff)", "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)",
    "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)", "FX 1 (rain)", "FX 2 (soundtrack)",
    "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)",
    "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum",
    "Reverse Cymbal", "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring",
    "Helicopter", "Applause", "Gunshot",
]
assert len(GM_PROGRAM_NAMES) == 128

"""The shared data model: notes in beat ticks, the tempo map and the meter.

Every layer (MIDI files, tokenizer, generation, live output, the piano roll) speaks this.
Time is measured in ticks of TICKS_PER_BEAT per quarter note ("beat"); seconds are derived
from the tempo map only where something must happen in real time.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

TICKS_PER_BEAT = 480  # fine enough for any grid the tokenizer or the GUI snaps to
DEFAULT_BPM = 120.0
DRUM_CHANNEL = 9  # MIDI channel 10, zero-based


@dataclass(slots=True)
class Note:
    start: int  # ticks from the start of the piece
    duration: int  # ticks, >= 1
    pitch: int  # 0..127
    velocity: int = 80  # 1..127
    program: int = 0  # General MIDI program 0..127 (ignored for drums)
    drum: bool = False

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

    @property
    def bar_ticks(self) -> int:
        return self.numerator * TICKS_PER_BEAT * 4 // self.denominator


@dataclass(slots=True)
class Track:
    """A view of the notes that share one instrument."""
    program: int
    drum: bool
    notes: list[Note]

    @property
    def name(self) -> str:
        return "Drums" if self.drum else GM_PROGRAM_NAMES[self.program]


@dataclass
class Score:
    notes: list[Note] = field(default_factory=list)
    tempos: list[TempoChange] = field(default_factory=lambda: [TempoChange(0, DEFAULT_BPM)])
    time_signatures: list[TimeSignature] = field(default_factory=lambda: [TimeSignature(0, 4, 4)])

    def __post_init__(self) -> None:
        self.normalize()

    # --- structure -----------------------------------------------------------------------
    def normalize(self) -> None:
        """Sort everything, guarantee a tempo and a meter at tick 0, drop duplicate changes."""
        self.notes.sort(key=lambda n: (n.start, n.drum, n.program, n.pitch, n.duration))
        self.tempos = _dedupe_changes(sorted(self.tempos, key=lambda t: t.tick), TempoChange(0, DEFAULT_BPM),
                                      lambda a, b: a.bpm == b.bpm)
        self.time_signatures = _dedupe_changes(sorted(self.time_signatures, key=lambda t: t.tick),
                                               TimeSignature(0, 4, 4),
                                               lambda a, b: (a.numerator, a.denominator) == (b.numerator, b.denominator))

    def tracks(self) -> list[Track]:
        groups: dict[tuple[int, bool], list[Note]] = {}
        for n in self.notes:
            groups.setdefault(n.instrument, []).append(n)
        return [Track(p, d, ns) for (p, d), ns in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))]

    @property
    def end_tick(self) -> int:
        return max((n.end for n in self.notes), default=0)

    def copy(self) -> "Score":
        return Score([replace(n) for n in self.notes], list(self.tempos), list(self.time_signatures))

    def slice(self, start: int, end: int) -> "Score":
        """Notes starting in [start, end), shifted to begin at 0, with the tempo and meter in force."""
        notes = [replace(n, start=n.start - start) for n in self.notes if start <= n.start < end]
        tempos = [TempoChange(0, self.tempo_at(start))] + [
            TempoChange(t.tick - start, t.bpm) for t in self.tempos if start < t.tick < end]
        ts0 = self.time_signature_at(start)
        metres = [TimeSignature(0, ts0.numerator, ts0.denominator)] + [
            TimeSignature(t.tick - start, t.numerator, t.denominator) for t in self.time_signatures if start < t.tick < end]
        return Score(notes, tempos, metres)

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

"""The meter the music has, inferred from its notes, for the model's view of a file whose declared meter
cannot be the music's: exported performances and POP909 write 1/4 or 1/8 throughout (a bar line on every
beat), or no meter at all, or a 4/4 whose beats are not the performance's.

The document and the saved file keep what the file says; only `Score.token_view()` (what the tokenizer, and
so evaluation, training, continuation and infill, read) puts the inferred meter in place of the declared
one, and `core.midi`'s read report says so ("meter 1/4 throughout looks like a beat, not a bar: the model
reads it as 4/4 from beat 3").

Where the meter is replaced and the notes are quantised to a 16th grid of their own, off the file's
(POP909's raw files: every onset 62 ticks past a 16th, say; more onsets on that grid than on the file's
16ths and triplets: `grid_shift`), the view also moves every note, every tempo change after tick 0 and the
inferred bars later by one constant, `MeterGuess.shift` (0 <= shift < a 16th), so that the music's 16ths
are the tokenizer's, as they were in training (tools/make_pop909.py moved the notes of the corpus onto the
grid). A view carries its shift (`Score.view_shift`), and everything that
maps between the view's ticks and the document's goes through `Score.to_document` / `from_document` (and
their note forms): continuation and infill take the document's ticks in and give what the model wrote back in
them, on the file's own grid. The read report tells the shift ("..., its notes 62 ticks later to fall on the
grid"). A file on its grid gets shift 0 and the same tokens as before; the document never moves.

When the declared meter is replaced (`model_meter`), one of:
- bars of one beat or less (1/4, 1/8, 2/8, 3/16...) in force over more than MAX_SHORT_BARS bars in a row
  (`implausible_meter`);
- no meter in the file (the reader's 4/4 is marked undeclared), and the notes say something else than 4/4
  from tick 0, or are quantised off the file's grid;
- a quantised performance shifted off the file's grid: over half the onsets off its 16ths and 8th triplets
  but on a 16th grid of their own, and the beat's phase more than a 32nd from the file's beat
  (`off_grid_phase`; a notated file is always on its grid, a live one too unsteady to tell).
Nothing else is touched: a file that declares 2/4, 3/4, 4/4, 6/8... on its grid keeps its meter exactly.

How the meter is inferred (`infer_meter`), from onsets, durations, pitches and velocities only:

1. The beat's phase. A performance's beats need not fall on the file's beat grid (POP909's lie a fixed
   fraction of a beat off it). Every note votes for the phase of its onset within the beat, on the circle of
   one beat, weighted by how much it marks a beat (longer, louder and lower notes weigh more); the weighted
   circular mean is the phase. The model's bars can only start on a 16th (the shortest bar the vocabulary
   has), so the downbeat, in the view's ticks (after the shift), is then rounded to the nearest 16th.
2. Three cues per beat, each normalised over the piece (z-scores): onsets (the weight of the notes struck
   within an eighth of the beat), bass (the lowest notes struck there, by their length: bass lines move on
   downbeats) and harmony (how much the pitch classes sounding in the beat differ from those of the beat
   before: chords change on downbeats).
3. The bar. For every bar length of 2, 3, 4 or 6 beats and every offset within it, the contrast of the mean
   salience (a weighted sum of the cues) of the beats at that offset against all beats. The bar length is the
   one with the best contrast of onsets and harmony (BAR_CUES) after a prior that favours 4 (most music, and
   most of the music the model learnt from, is in 4) and longer bars over their halves (a 4/4 downbeat also
   makes a good 2/4 one); the downbeat is its best offset by all three cues (DOWNBEAT_CUES, bass first).
   The weights were chosen on POP909's training split against its beat annotations (bench/eval_meter.py).

The result is a pickup bar of the downbeat's length (n/4, n/8 or n/16, none when the downbeat is at 0)
followed by n/4 bars throughout: the layout the corpus builder (tools/make_pop909.py) gives POP909 from
its beat annotations, which the model was trained on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .notes import TICKS_PER_BEAT, Note, TimeSignature

BEAT = TICKS_PER_BEAT
SIXTEENTH = TICKS_PER_BEAT // 4  # the finest bar line the tokenizer's meters can place
MAX_SHORT_BARS = 8  # more bars of a beat or less in a row than this: the declared meter is not a bar
MIN_NOTES = 16  # fewer notes than this: too little to go on, the declared meter stays
GRID_SLACK = 10  # ticks: an onset this near a 16th or an 8th triplet of the file is on its grid
MIN_GRID_AGREEMENT = 0.8  # see off_grid_phase (POP909's shifted files: 0.75-0.99; jitter of 20 ticks: 0.58)
# see grid_shift: POP909's 1/4 files quantised off the grid agree 0.65-0.99 (their test split); a phrase
# unsteady by 20 ticks around a grid of its own (0.58) would only be moved by its mean phase, no harm either
MIN_SHIFT_AGREEMENT = 0.6
BAR_BEATS = (2, 3, 4, 6)
# Prior per bar length (added to the contrast, in z units): 4 first, then the others.
BAR_PRIOR = {2: -0.25, 3: -0.15, 4: 0.0, 6: -0.2}
# A bar of 2k beats wins over one of k when its contrast is at least this share of k's (a 4/4 downbeat
# also makes a good 2/4 one; two bars of 3/4 make a fair 6/4, so 6 must do better than 3).
LONGER_BAR_MARGIN = {2: 0.8, 3: 1.25}  # (3/4 pieces still often read as 6/4: two bars as one)
# Weights of the cues (onsets, bass, harmony): for the bar length, and for its offset (the downbeat).
BAR_CUES = (1.0, 0.0, 0.5)
DOWNBEAT_CUES = (0.5, 1.0, 1.0)


@dataclass(frozen=True)
class MeterGuess:
    """The inferred meter: bars of `beats` quarter notes, the first full one starting at tick `downbeat` of
    the view (0 <= downbeat < a bar; the music before it is a pickup), whose notes lie `shift` ticks after
    the file's."""
    beats: int
    downbeat: int  # in the view's ticks (the file's + shift)
    phase: float  # the beat's phase in the file's ticks (0 <= phase < a beat), before rounding to a 16th
    contrast: float  # the winning contrast (z units): how clearly the downbeats stand out
    reason: str  # why the declared meter was replaced (the start of the report's line)
    shift: int = 0  # ticks the view moves every note later to put the notes' own 16ths on the file's (grid_shift)

    @property
    def bar_ticks(self) -> int:
        return self.beats * BEAT

    @property
    def grid_offset(self) -> float:
        """Ticks from the view's beat grid (from `downbeat`, on 16ths) to the music's beats after the shift
        (|offset| <= a 32nd): what is left off the grid (bench/eval_meter.py measures what it costs)."""
        return (self.phase + self.shift - self.downbeat + BEAT / 2) % BEAT - BEAT / 2

    def time_signatures(self) -> list[TimeSignature]:
        """The meter map of the model's view: a pickup bar of the downbeat's length (if any), then n/4."""
        out = []
        if self.downbeat > 0:
            out.append(TimeSignature(0, *_meter_of_ticks(self.downbeat)))
        out.append(TimeSignature(self.downbeat, self.beats, 4))
        return out

    def describe(self) -> str:
        """One line for the read report. The downbeat is told in the file's beats (to their nearest 16th): the
        user counts those, not the view's shifted ones."""
        first = max(0, round((self.downbeat - self.shift) / SIXTEENTH)) * SIXTEENTH % self.bar_ticks
        where = "from tick 0" if first == 0 else (
            f"from beat {1 + first // BEAT}" if first % BEAT == 0 else f"with a pickup of {first / BEAT:g} beats")
        moved = f", its notes {self.shift} ticks later to fall on the grid" if self.shift else ""
        return f"{self.reason}: the model reads it as {self.beats}/4 {where}{moved} (the piece keeps its meter)"


def _meter_of_ticks(ticks: int) -> tuple[int, int]:
    """The simplest n/4, n/8 or n/16 lasting `ticks` (a multiple of a 16th)."""
    for d in (4, 8, 16):
        unit = TICKS_PER_BEAT * 4 // d
        if ticks % unit == 0:
            return ticks // unit, d
    raise ValueError(f"{ticks} ticks is not a whole number of 16ths")


def declared_meter_text(time_signatures: Sequence[TimeSignature]) -> str:
    """How the read report names the declared meter: "1/4 throughout", "1/4 then 4/4"..."""
    names: list[str] = []
    for ts in time_signatures:
        name = f"{ts.numerator}/{ts.denominator}"
        if not names or names[-1] != name:
            names.append(name)
    if len(names) == 1:
        return f"{names[0]} throughout"
    return " then ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def implausible_meter(time_signatures: Sequence[TimeSignature], end_tick: int) -> bool:
    """Whether the declared meter puts a bar line on (at most) every beat: a meter of a beat or less in force
    for more than MAX_SHORT_BARS bars in a row before `end_tick` (the end of the music)."""
    sigs = sorted(time_signatures, key=lambda t: t.tick)
    for i, ts in enumerate(sigs):
        if ts.bar_ticks > BEAT:
            continue
        stop = min(sigs[i + 1].tick if i + 1 < len(sigs) else end_tick, end_tick)
        if (stop - ts.tick) > MAX_SHORT_BARS * ts.bar_ticks:
            return True
    return False


def beat_phase(notes: Sequence[Note]) -> float:
    """The phase of the beat within the file's beat grid, in ticks [0, BEAT): the weighted circular mean
    of the onsets (see the module doc)."""
    if not notes:
        return 0.0
    starts = np.array([n.start for n in notes], dtype=float)
    weights = _note_weights(notes)
    angle = 2 * math.pi * starts / BEAT
    z = np.sum(weights * np.exp(1j * angle))
    if abs(z) < 1e-9:
        return 0.0
    return float((np.angle(z) % (2 * math.pi)) * BEAT / (2 * math.pi)) % BEAT


def _note_weights(notes: Sequence[Note]) -> np.ndarray:
    """How much each note marks a beat: longer (up to a bar), louder and lower notes more."""
    dur = np.array([min(max(n.duration, 1), 4 * BEAT) for n in notes], dtype=float)
    vel = np.array([n.velocity for n in notes], dtype=float)
    pitch = np.array([n.pitch for n in notes], dtype=float)
    low = np.where(pitch < np.percentile(pitch, 30), 1.5, 1.0) if len(notes) > 1 else np.ones(len(notes))
    return np.log1p(dur / (BEAT / 4)) * (vel / 64.0) * low


def beat_cues(notes: Sequence[Note], phase: float) -> np.ndarray:
    """The three cues of every beat, z-scored over the beats where something sounds (NaN elsewhere):
    [onsets, bass, harmony] x beats, beat b at tick phase + b * BEAT (`phase` <= 0 and notes start at 0
    or later, so that each note's nearest beat is one of them). Drums count for onsets only."""
    starts = np.array([n.start for n in notes], dtype=float)
    beats = np.floor((starts - phase) / BEAT + 0.5).astype(int)  # the nearest beat
    nb = int(beats.max()) + 2
    near = np.abs(starts - (phase + beats * BEAT)) <= BEAT / 8
    w = _note_weights(notes)
    onset = np.bincount(beats[near], weights=w[near], minlength=nb)[:nb]

    pitched = np.array([not n.drum for n in notes])
    pitch = np.array([n.pitch for n in notes], dtype=float)
    dur = np.array([min(n.duration, 4 * BEAT) for n in notes], dtype=float)
    bass = np.zeros(nb)
    if pitched.any():
        low_line = np.percentile(pitch[pitched], 25)
        is_bass = pitched & near & (pitch <= low_line)
        bass = np.bincount(beats[is_bass], weights=np.log1p(dur[is_bass] / (BEAT / 4)), minlength=nb)[:nb]

    chroma = np.zeros((nb, 12))  # the pitch classes sounding in each beat, by time (at most 8 beats a note)
    if pitched.any():
        on = starts[pitched]
        off = on + np.maximum(dur[pitched], 1)
        pc = (pitch[pitched] % 12).astype(int)
        first = np.maximum(np.floor((on - phase) / BEAT).astype(int), 0)
        for j in range(9):
            b = first + j
            lo = phase + b * BEAT
            overlap = np.minimum(lo + BEAT, off) - np.maximum(lo, on)
            keep = (overlap > 0) & (b < nb)
            np.add.at(chroma, (b[keep], pc[keep]), overlap[keep])
    norms = np.linalg.norm(chroma, axis=1)
    unit = chroma / np.maximum(norms, 1e-9)[:, None]
    change = np.zeros(nb)
    change[1:] = 1.0 - np.sum(unit[1:] * unit[:-1], axis=1)
    change[1:][(norms[1:] == 0) | (norms[:-1] == 0)] = 0.0

    active = (onset > 0) | (norms > 0)
    cues = np.full((3, nb), np.nan)
    for i, cue in enumerate((onset, bass, change)):
        values = cue[active]
        sd = values.std()
        cues[i, active] = (values - values.mean()) / sd if sd > 0 else 0.0
    return cues


def bar_contrasts(salience: np.ndarray, cues: np.ndarray) -> dict[int, tuple[int, float]]:
    """For every bar length, its best offset (in beats) and that offset's contrast: the mean salience of the
    beats at that offset against that of all beats (beats where nothing sounds left out)."""
    out = {}
    salience = np.where(np.isnan(cues[0]), np.nan, salience)
    valid = ~np.isnan(salience)
    mean = salience[valid].mean() if valid.any() else 0.0
    for beats in BAR_BEATS:
        best = (0, -math.inf)
        for k in range(beats):
            sel = salience[k::beats]
            sel = sel[~np.isnan(sel)]
            if len(sel) == 0:
                continue
            c = float(sel.mean() - mean)
            if c > best[1]:
                best = (k, c)
        out[beats] = best
    return out


def choose_bar(contrasts: dict[int, tuple[int, float]]) -> int:
    """The bar length (in beats) from the contrasts: the best after BAR_PRIOR, a longer bar kept over its
    half when it does nearly as well (see the module doc)."""
    scored = {b: c + BAR_PRIOR[b] for b, (_, c) in contrasts.items() if c > -math.inf}
    if not scored:
        return 4
    best = max(scored, key=lambda b: scored[b])
    if best in LONGER_BAR_MARGIN and contrasts[best * 2][1] >= LONGER_BAR_MARGIN[best] * contrasts[best][1]:
        best *= 2
    return best


def infer_meter(notes: Iterable[Note], reason: str = "", shift: int = 0) -> MeterGuess | None:
    """The meter and downbeat of the music (see the module doc) in a view that moves the notes `shift`
    ticks later; None with too few notes to tell."""
    notes = [n for n in notes if n.start >= 0]
    if len(notes) < MIN_NOTES:
        return None
    phase = beat_phase(notes)
    origin = phase - BEAT  # beat 0: one before the phase, so that no note is nearer a beat before it
    cues = beat_cues(notes, origin)
    beats = choose_bar(bar_contrasts(np.asarray(BAR_CUES) @ np.nan_to_num(cues, nan=0.0), cues))
    offset, contrast = bar_contrasts(np.asarray(DOWNBEAT_CUES) @ np.nan_to_num(cues, nan=0.0), cues)[beats]
    first = origin + offset * BEAT + shift  # a downbeat, in the view's ticks
    bar = beats * BEAT
    downbeat = int(round((first % bar) / SIXTEENTH)) * SIXTEENTH % bar
    return MeterGuess(beats, downbeat, phase, contrast, reason, shift)


def _file_grid_share(starts: np.ndarray) -> float:
    """The share of onsets on the file's grid: within GRID_SLACK ticks of its 16ths or 8th triplets."""
    off = np.minimum.reduce([np.minimum(starts % unit, unit - starts % unit) for unit in (SIXTEENTH, BEAT // 3)])
    return float(np.mean(off <= GRID_SLACK))


def _sixteenth_phase(starts: np.ndarray) -> tuple[float, float]:
    """The onsets' mean phase within a 16th, in ticks [0, SIXTEENTH), and how well they agree on it (the
    resultant's length: 1 when every onset has that phase, near 0 for onsets anywhere)."""
    resultant = np.mean(np.exp(2j * math.pi * starts / SIXTEENTH))
    return float((np.angle(resultant) % (2 * math.pi)) * SIXTEENTH / (2 * math.pi)) % SIXTEENTH, float(abs(resultant))


def grid_shift(notes: Sequence[Note]) -> int:
    """Ticks (0 <= shift < a 16th) that move the notes' own 16th grid onto the file's, or 0. The notes have
    a grid of their own when their onsets agree on a phase within the 16th (a resultant of at least
    MIN_SHIFT_AGREEMENT), that phase is more than GRID_SLACK from the file's 16ths, and more onsets lie on it
    than on the file's 16ths and 8th triplets (so that a notated piece whose triplets pull the mean phase
    off its grid stays where it is). Always forward, so that no note moves before tick 0. Used where the
    declared meter is replaced anyway (model_meter), so looser than off_grid_phase, which decides that."""
    if len(notes) < MIN_NOTES:
        return 0
    starts = np.array([n.start for n in notes])
    phase, agreement = _sixteenth_phase(starts)
    if agreement < MIN_SHIFT_AGREEMENT or min(phase, SIXTEENTH - phase) <= GRID_SLACK:
        return 0
    from_own = (starts - phase) % SIXTEENTH
    if np.mean(np.minimum(from_own, SIXTEENTH - from_own) <= GRID_SLACK) <= _file_grid_share(starts):
        return 0
    return int(round(-phase)) % SIXTEENTH


def off_grid_phase(notes: Sequence[Note]) -> float | None:
    """The beat's phase when the music's beats clearly fall between the file's (a quantised performance
    shifted off the file's grid, as POP909's are): over half the onsets off the file's 16th and 8th-triplet
    grid (by more than GRID_SLACK ticks), the onsets on a 16th grid of their own (their phases within a 16th
    agree: a resultant of at least MIN_GRID_AGREEMENT, which the jitter of a live or unquantised performance
    does not give, so that a jam's captured phrase keeps the jam's meter) and the beat's phase more than a
    32nd from the file's beat; else None."""
    if len(notes) < MIN_NOTES:
        return None
    starts = np.array([n.start for n in notes])
    if _file_grid_share(starts) >= 0.5:
        return None
    if _sixteenth_phase(starts)[1] < MIN_GRID_AGREEMENT:
        return None
    phase = beat_phase(notes)
    return phase if min(phase, BEAT - phase) > BEAT / 8 else None


def model_meter(time_signatures: Sequence[TimeSignature], notes: Sequence[Note]) -> MeterGuess | None:
    """The meter the model should read in place of the declared one, and the shift that puts the notes on
    the grid (see the module doc), or None to keep the declared one and the notes where they are (it is
    plausible, or the notes are too few to tell)."""
    notes = list(notes)
    end = max((n.end for n in notes), default=0)
    declared = declared_meter_text(time_signatures)
    if implausible_meter(time_signatures, end):
        return infer_meter(notes, f"meter {declared} looks like a beat, not a bar", grid_shift(notes))
    if not any(ts.declared for ts in time_signatures):
        guess = infer_meter(notes, "no meter in the file", grid_shift(notes))
        plain = guess is None or (guess.time_signatures() == [TimeSignature(0, 4, 4)] and not guess.shift)
        return None if plain else guess
    phase = off_grid_phase(notes)
    if phase is not None:
        return infer_meter(notes, f"the beats fall {phase / BEAT:.2f} of a beat after those of the meter "
                                  f"{declared}", grid_shift(notes))
    return None

"""Score -> tokens: quantise to the grid, lay out bars, write the tokens, and report what had to change.

The encoder writes only sequences the grammar accepts (core.tokenizer.grammar); it does not consult the
grammar, so the two are kept in step by the tests (round trips, and every encoding advanced through a grammar).
"""
from __future__ import annotations

from typing import NamedTuple

from core.score import Score

from .vocabulary import (DURATION, DURATION_STEPS, FIRST_ID, GRID, MAX_ONSET_NOTES, PITCH, POS, STEP_TICKS,
                         TEMPO_MAX, TEMPO_MIN, VELOCITY, Vocabulary, meter_for_steps, meter_steps,
                         nearest_duration_index, supported_meter, velocity_level)


class GridNote(NamedTuple):
    """A note as the encoder writes it: everything on the grid and in the vocabulary's values."""
    onset: int  # grid step from the piece's start
    duration: int  # index into DURATION_STEPS
    pitch: int
    level: int  # velocity level
    instrument: tuple[int, bool]  # (program, drum)


def encode_score(vocab: Vocabulary, score: Score, *, eos: bool = True,
                 end_tick: int | None = None) -> tuple[list[int], list[str]]:
    """Tokens of `score` in `vocab`'s ids (BOS ... [EOS]) and one line per kind of change the grid or the
    vocabulary forced (see Tokenizer.encode_with_report)."""
    return _Encoder(vocab).run(score, eos, end_tick)


def _to_step(tick: float) -> int:
    """Nearest grid step (halves round up)."""
    return int((tick + STEP_TICKS // 2) // STEP_TICKS)


class _Encoder:
    """One encoding run: quantise to the grid, lay out bars, write tokens, count what changed."""

    def __init__(self, tok: Vocabulary) -> None:
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
        last = max([0] + [n.onset for n in notes] + [s for s, _ in tempos] + [s for s, _ in meters])
        if end_tick is not None and end_tick > 0:
            last = max(last, _to_step(end_tick) - 1)
        bars = self.lay_out_bars(meters, last)
        return self.write(bars, tempos, notes, eos), self.report()

    def tempo_steps(self, score: Score) -> list[tuple[int, int]]:
        """(step, whole BPM) of every tempo change, restatements dropped, one at step 0."""
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
        """(step, supported meter) of every meter change, restatements dropped, one at step 0."""
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

    def note_steps(self, score: Score) -> list[GridNote]:
        """Every note of the score on the grid, in the vocabulary's ranges."""
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
            d = nearest_duration_index(steps)
            if DURATION_STEPS[d] != steps:
                key = "notes longer than 64 beats shortened" if steps > DURATION_STEPS[-1] \
                    else "long notes rounded to a coarser duration"
                self.note_issue(key, f"{steps} steps -> {DURATION_STEPS[d]}")
            pitch = n.pitch
            if not 0 <= pitch <= 127:
                self.note_issue("pitches outside 0..127 clamped", str(pitch))
                pitch = min(max(pitch, 0), 127)
            instrument = (0, True) if n.drum else (min(max(n.program, 0), 127), False)
            out.append(GridNote(onset, d, pitch, velocity_level(n.velocity), instrument))
        if off_grid:
            self.counts[f"notes moved to the 1/{GRID}-beat grid"] = off_grid
        return out

    def unique_notes(self, notes: list[GridNote]) -> list[GridNote]:
        """One note per (onset, instrument, pitch), the longest; at most MAX_ONSET_NOTES per instrument and
        onset (the lowest and highest kept first, then inward), which is what the grammar accepts."""
        by_key: dict[tuple, GridNote] = {}
        for n in notes:
            key = (n.onset, n.instrument, n.pitch)
            kept = by_key.get(key)
            if kept is None or (n.duration, n.level) > (kept.duration, kept.level):
                if kept is not None:
                    self.note_issue("notes sounding twice at one onset merged (the longest kept)",
                                    f"pitch {n.pitch} at step {n.onset}")
                by_key[key] = n
            else:
                self.note_issue("notes sounding twice at one onset merged (the longest kept)",
                                f"pitch {n.pitch} at step {n.onset}")
        chords: dict[tuple, list[GridNote]] = {}
        for n in by_key.values():
            chords.setdefault((n.onset, n.instrument), []).append(n)
        out = []
        for chord in chords.values():
            if len(chord) > MAX_ONSET_NOTES:
                chord.sort(key=lambda n: n.pitch)
                # the outer voices carry a chord: keep from both ends inward
                keep = sorted(range(len(chord)), key=lambda i: min(i, len(chord) - 1 - i))[:MAX_ONSET_NOTES]
                self.note_issue(f"chords over {MAX_ONSET_NOTES} notes of one instrument thinned",
                                f"{len(chord)} notes at step {chord[0].onset}")
                chord = [chord[i] for i in sorted(keep)]
            out += chord
        out.sort(key=lambda n: (n.onset, n.instrument, n.pitch))
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
                meter = meter_for_steps(short)
                length = meter_steps(meter)
                self.note_issue("bars cut short by a meter change written with their own meter",
                                f"{short} steps at step {start} -> {meter[0]}/{meter[1]}")
            bars.append((start, length, meter))
            start += length
            if start > last_step:
                return bars

    def write(self, bars, tempos, notes: list[GridNote], eos: bool) -> list[int]:
        tok = self.tok
        pos0, pitch0, dur0, vel0 = FIRST_ID[POS], FIRST_ID[PITCH], FIRST_ID[DURATION], FIRST_ID[VELOCITY]
        tempo_at = {s: bpm for s, bpm in tempos[1:]}
        at_onset: dict[int, list[GridNote]] = {}
        for n in notes:
            at_onset.setdefault(n.onset, []).append(n)
        onsets = sorted(set(at_onset) | set(tempo_at))
        ids = [tok.bos_id]
        if tok.infill and notes and len({n.level for n in notes}) == 1:
            ids.append(tok.flat_id)
        ids.append(tok.tempo_id(tempos[0][1]))
        j = 0
        prev_meter = None
        for start, length, meter in bars:
            ids.append(tok.bar_id)
            if meter != prev_meter:
                ids.append(tok.timesig_id(*meter))
                prev_meter = meter
            # the grammar forgets both at every Bar, so each bar states them again
            instrument = velocity = None
            velocities: dict[tuple[int, bool], int] = {}  # level of each instrument's last note in the bar
            while j < len(onsets) and onsets[j] < start + length:
                step = onsets[j]
                j += 1
                ids.append(pos0 + step - start)
                if step in tempo_at:
                    ids.append(tok.tempo_id(tempo_at[step]))
                for group in _instrument_groups(at_onset.get(step, ()), instrument):
                    for n in group:
                        if n.instrument != instrument:
                            ids.append(tok.instrument_id(*n.instrument))
                            instrument = n.instrument
                        if velocities.get(n.instrument, velocity) != n.level:
                            ids.append(vel0 + n.level)
                        velocities[n.instrument] = velocity = n.level
                        ids.append(pitch0 + n.pitch)
                        ids.append(dur0 + n.duration)
        if eos:
            ids.append(tok.eos_id)
        return ids


def _instrument_groups(notes, current) -> list[list[GridNote]]:
    """Notes of one onset grouped by instrument, pitch ascending; the instrument already in use first, so
    a switch is written only where needed."""
    groups: dict[tuple[int, bool], list[GridNote]] = {}
    for n in notes:
        groups.setdefault(n.instrument, []).append(n)
    order = sorted(groups, key=lambda inst: (inst != current, inst[1], inst[0]))
    return [sorted(groups[inst], key=lambda n: (n.pitch, n.duration, n.level)) for inst in order]

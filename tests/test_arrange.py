"""core.arrange: grid snapping from the bar line, where a continuation starts, and placing it into a
real piece (insert or replace), through a real MIDI file."""
from __future__ import annotations

from pathlib import Path

import pytest

from core import arrange
from core.midi import read_midi, write_midi
from core.score import Note, Score, TempoChange, TimeSignature

BACH = Path(__file__).resolve().parent / "data" / "corpus" / "bach" / "bwv10.7.mid"


def test_snap_counts_the_grid_from_the_bar_line_across_a_meter_change():
    # 4/4 for one bar, then 3/8 bars (720 ticks) from 1920
    meta = Score([], [TempoChange(0, 120)], [TimeSignature(0, 4, 4), TimeSignature(1920, 3, 8)])
    assert arrange.snap_tick(meta, 1000, 120) == 960
    assert arrange.snap_tick(meta, 1000, 120, "floor") == 960
    assert arrange.snap_tick(meta, 1079, 120, "floor") == 960
    assert arrange.snap_tick(meta, 1920 + 720 + 300, 480) == 1920 + 720 + 480  # grid from 2640, not from 0 (2880)
    assert arrange.snap_tick(meta, -30, 120) == 0
    assert arrange.snap_tick(meta, 1001.4, 0) == 1001
    assert arrange.bar_line_at_or_after(meta, 0) == 0
    assert arrange.bar_line_at_or_after(meta, 1) == 1920
    assert arrange.bar_line_at_or_after(meta, 1921) == 1920 + 720
    # a meter change inside a bar cuts it short: the next bar line is the change
    odd = Score([], [TempoChange(0, 120)], [TimeSignature(0, 4, 4), TimeSignature(1000, 3, 4)])
    assert arrange.bar_line_at_or_after(odd, 500) == 1000


def test_continuation_follows_the_last_note_before_the_playhead():
    notes = [Note(0, 480, 60), Note(480, 480, 62), Note(3840, 960, 64)]
    assert arrange.continuation_request(notes, 1920) == 960        # a rest before the playhead: from the note
    assert arrange.continuation_request(notes, 700) == 700         # a note still sounds there: the playhead
    assert arrange.continuation_request(notes, 9000) == 4800       # far after the end: right after the piece
    assert arrange.continuation_request(notes, 0) == 4800          # nothing before the playhead: after the piece
    assert arrange.continuation_request([], 1920) == 1920          # an empty piece: at the playhead


def test_insert_and_replace_a_continuation_into_a_real_piece(tmp_path):
    piece, _ = read_midi(BACH)
    bar = piece.time_signature_at(0).bar_ticks
    start, end = 2 * bar, 4 * bar
    continuation = [Note(start + k * 240, 240, 72, 90) for k in range(2 * bar // 240)]
    after = [n for n in piece.notes if n.start >= start]
    inside = [n for n in piece.notes if start <= n.start < end]
    assert after and inside

    inserted = arrange.placed_score(piece, continuation, start, end, arrange.INSERT)
    write_midi(inserted, tmp_path / "insert.mid")
    back, _ = read_midi(tmp_path / "insert.mid")
    assert len(back.notes) == len(piece.notes) + len(continuation)
    moved = sorted((n.start, n.pitch) for n in back.notes if n.start >= end)
    assert moved == sorted((n.start + 2 * bar, n.pitch) for n in after)
    assert sorted((n.start, n.pitch) for n in back.notes if start <= n.start < end) == \
        sorted((n.start, n.pitch) for n in continuation)

    replaced = arrange.placed_score(piece, continuation, start, end, arrange.REPLACE)
    write_midi(replaced, tmp_path / "replace.mid")
    back, _ = read_midi(tmp_path / "replace.mid")
    assert len(back.notes) == len(piece.notes) - len(inside) + len(continuation)
    assert sorted((n.start, n.pitch) for n in back.notes if n.start >= end) == \
        sorted((n.start, n.pitch) for n in piece.notes if n.start >= end)


def test_insert_moves_tempo_and_meter_changes_with_the_music():
    meta = Score([], [TempoChange(0, 100), TempoChange(3840, 80)], [TimeSignature(0, 4, 4), TimeSignature(3840, 3, 4)])
    notes = {"a": Note(0, 480, 60), "b": Note(3840, 480, 62)}
    plan = arrange.place_continuation(notes, meta, 1920, 3840, arrange.INSERT)
    assert plan.moved == {"b": Note(5760, 480, 62)} and not plan.removed and plan.meta_changed
    assert [(t.tick, t.bpm) for t in plan.tempos] == [(0, 100), (5760, 80)]
    assert [(t.tick, t.numerator) for t in plan.time_signatures] == [(0, 4), (5760, 3)]
    at_start = arrange.place_continuation(notes, Score([], [TempoChange(0, 90)]), 0, 1920, arrange.INSERT)
    assert not at_start.meta_changed and at_start.tempos == [TempoChange(0, 90)]
    plan = arrange.place_continuation(notes, meta, 0, 1920, arrange.REPLACE)
    assert plan.removed == ["a"] and not plan.moved and not plan.meta_changed
    with pytest.raises(ValueError, match="unknown placement"):
        arrange.place_continuation(notes, meta, 0, 1920, "overlay")


def test_whole_bars_of_a_range_and_of_notes_across_a_meter_change():
    # 4/4 for two bars, then 3/4 bars (1440 ticks) from 3840
    meta = Score([], [TempoChange(0, 120)], [TimeSignature(0, 4, 4), TimeSignature(3840, 3, 4)])
    assert arrange.whole_bars(meta, 2020, 3700) == (1920, 3840)  # inside bar 2: that bar
    assert arrange.whole_bars(meta, 1920, 3840) == (1920, 3840)  # bar lines stay
    assert arrange.whole_bars(meta, 3000, 4000) == (1920, 3840 + 1440)  # into the first 3/4 bar
    assert arrange.whole_bars(meta, 500, 500) == (0, 1920)  # at least one bar
    notes = [Note(4000, 3000, 60), Note(2000, 100, 62)]  # the first is held far into later bars
    assert arrange.bars_of_notes(meta, notes) == (1920, 3840 + 1440)  # the bars they start in, no more
    assert arrange.bars_of_notes(meta, []) is None


def test_new_notes_go_to_the_track_of_the_notes_they_replace():
    replaced = [Note(0, 480, 60, track=2), Note(480, 480, 62, track=2), Note(0, 480, 67, track=1),
                Note(0, 960, 40, program=33, track=3)]
    new = [Note(0, 240, 64), Note(0, 240, 45, program=33), Note(0, 240, 50, program=40)]
    homes = arrange.home_tracks((), replaced, new, 0, 960)  # no other notes: the replaced notes' tracks
    assert [n.track for n in homes] == [2, 3, None]  # most of the piano's replaced notes were in track 2
    assert [(n.start, n.pitch, n.program) for n in homes] == [(n.start, n.pitch, n.program) for n in new]
    assert all(n.track is None for n in new)  # copies


def test_bars_between_follow_meter_changes_and_agree_with_the_bar_starts():
    meta = Score([], [TempoChange(0, 120)], [TimeSignature(0, 3, 4), TimeSignature(2000, 5, 4)])
    starts = meta.bar_starts(10_000)
    bars = list(arrange.bars_between(meta, 0, 10_000))
    assert [b.tick for b in bars] == starts  # a 3/4 bar cut short at 2000 by the meter change
    assert [b.index for b in bars] == list(range(len(starts)))
    assert [b.tick for b in arrange.bars_between(meta, 4500, 7000)] == [s for s in starts if 4400 - 1 < s <= 7000]
    assert all(arrange.bar_start_at(meta, t) == max(s for s in starts if s <= t) for t in range(0, 10_000, 97))
    assert bars[0].beat_ticks == 480 and bars[-1].signature.numerator == 5

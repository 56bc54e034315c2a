"""What the app's track controls mean, headless: which track every note of the document is saved in,
what plays when tracks are muted or soloed, and changing a track's instrument.

The app's document keeps the file's tracks without their notes, and notes that name their track (Note.track)
or none (the model's notes): those go to a track of their instrument when the piece becomes a Score
(Score.add_notes decides; a new track per instrument that has none). The functions here speak of the
tracks of that Score, by index: the document's own first, then the new ones.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Collection, Hashable, Iterable, Mapping

from core.channels import PITCHED_CHANNELS
from core.score import Event, Note, Score, Track


def assign(tracks: Iterable[Track], notes: Mapping[Hashable, Note]) -> tuple[Score, dict[Hashable, int]]:
    """The piece as it is saved (the document's `tracks`, given without their notes, then a new track per
    instrument of the notes that find none), and the index of the track each note (by its key) lands in."""
    # copies, as the Score owns its notes (made field by field: dataclasses.replace is 4x slower here)
    copies = {k: Note(n.start, n.duration, n.pitch, n.velocity, n.program, n.drum, n.track) for k, n in notes.items()}
    key_of = {id(n): k for k, n in copies.items()}
    score = Score(copies.values(), tracks=[t.copy(notes=False) for t in tracks])
    placed = {key_of[id(n)]: i for i, t in enumerate(score.tracks(include_empty=True)) for n in t.notes}
    return score, placed


# --- mute and solo -------------------------------------------------------------------------------
def track_keys(score: Score, document_tracks: int) -> list[Hashable]:
    """A key per track of `score` that names the same track while the piece is edited: a document track's
    index; for a track that exists only as the home of notes naming none (at most one per instrument),
    ("new", program, drum), as its index moves when another instrument's notes get a new track before it."""
    return [i if i < document_tracks else ("new", *t.instrument)
            for i, t in enumerate(score.tracks(include_empty=True))]


def is_audible(key: Hashable, muted: Collection[Hashable], soloed: Collection[Hashable]) -> bool:
    """Mute silences a track, even a soloed one; while any track is soloed, only the soloed ones play."""
    return key not in muted and (not soloed or key in soloed)


def audible_score(score: Score, muted: Collection[Hashable] = (), soloed: Collection[Hashable] = (),
                  document_tracks: int | None = None) -> Score:
    """`score` with the notes of the silent tracks left out (tracks named by track_keys; by index when
    `document_tracks` is None). Every track keeps its events, so a pedal or controller that a muted track
    holds still acts on its channel, as it does on a mixer's muted channel strip."""
    tracks = score.tracks(include_empty=True)
    keys = track_keys(score, len(tracks) if document_tracks is None else document_tracks)
    kept = [t.copy(notes=is_audible(k, muted, soloed)) for t, k in zip(tracks, keys)]
    return Score((), list(score.tempos), list(score.time_signatures), tracks=kept)


# --- instrument ----------------------------------------------------------------------------------
def set_program(tracks: list[Track], index: int, program: int) -> list[Track]:
    """Copies of `tracks` (with their notes) where track `index` and all its notes play GM `program`.

    Program changes act on a channel whatever track holds them, so the track's own program changes on its
    channel are rewritten, and so are those that other tracks without notes there hold (a conductor's).
    A track that shares its channel with another track's notes moves to a free channel of its own (its
    controllers, pedal and bends with it), so that the other track keeps its sound. Raises ValueError for
    a program outside 0..127, a drum track, or when all 15 pitched channels are taken."""
    if not 0 <= index < len(tracks):
        raise ValueError(f"there is no track {index} (the piece has {len(tracks)})")
    if not isinstance(program, int) or not 0 <= program <= 127:
        raise ValueError(f"a General MIDI program is 0..127, not {program!r}")
    if tracks[index].drum:
        raise ValueError(f"{tracks[index].label} is a drum track: drums have no program to choose")
    out = [t.copy() for t in tracks]
    track = out[index]
    track.program = program
    track.notes = [replace(n, program=program) for n in track.notes]
    channel = track.channel
    if channel is None:  # the writer gives it a channel and the program changes it needs
        return out
    shared = any(j != index and t.channel == channel and t.notes for j, t in enumerate(out))
    if shared:
        taken = {t.channel for t in out if t.channel is not None}
        taken |= {e.channel for t in out for e in t.events if e.channel is not None}
        free = [c for c in PITCHED_CHANNELS if c not in taken]
        if not free:
            raise ValueError(f"{track.label} shares MIDI channel {channel + 1} with another track and no channel "
                             "is free for it to change its instrument alone")
        channel = track.channel = free[0]
        track.events = [_on_channel(e, channel) for e in track.events if e.kind != 0xC0]
        _put_program(track, channel, program)
        return out
    found_before_first_note = False
    first = min((n.start for n in track.notes), default=0)
    for j, t in enumerate(out):
        if j != index and t.channel == channel and t.notes:
            continue
        for k, e in enumerate(t.events):
            if e.kind == 0xC0 and e.channel == channel:
                t.events[k] = Event(e.tick, bytes((e.data[0], program)))
                found_before_first_note |= e.tick <= first
    if not found_before_first_note:
        _put_program(track, channel, program)
    return out


def _put_program(track: Track, channel: int, program: int) -> None:
    """A program change at the track's start, after its name and other meta events there."""
    at = next((k for k, e in enumerate(track.events) if e.tick > 0 or e.meta_type is None), len(track.events))
    track.events.insert(at, Event(0, bytes((0xC0 | channel, program))))


def _on_channel(e: Event, channel: int) -> Event:
    return Event(e.tick, bytes((e.data[0] & 0xF0 | channel,)) + e.data[1:]) if e.channel is not None else e

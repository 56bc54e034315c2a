"""Generated notes go to the track whose part they continue (core.voices), where tracks share an
instrument: POP909's MELODY / BRIDGE / PIANO (all program 0), a chorale's four voices. Checked on real
files through the reader (the true next bars, tracks hidden, placed again) and on what the bundled model
writes (no invented tracks on save, the melody stays on top)."""
from __future__ import annotations

from pathlib import Path

import pytest

from core import voices
from core.generate import Generator, SamplingConfig
from core.evaluate.music import hide_tracks
from core.midi import read_midi, score_to_bytes
from core.paths import base_model
from core.score import Note

DATA = Path(__file__).parent / "data"
CHORALES = sorted((DATA / "corpus" / "bach").glob("*.mid"))
POP = DATA / "pop909" / "001.mid"


def hidden_next_bars(path: Path, k: int, m: int):
    """The tracks' notes before bar k, the true notes of bars k..k+m without their tracks, and their tracks."""
    score, _ = read_midi(path)
    return (score, *hide_tracks(score, k, m))


def top_share(notes, among) -> float:
    return sum(n.pitch >= max(m.pitch for m in among if m.instrument == n.instrument
                              and m.start <= n.start < m.start + max(m.duration, 1)) for n in notes) / len(notes)


@pytest.mark.parametrize("path", CHORALES, ids=lambda p: p.stem)
def test_a_chorales_true_next_bars_go_back_to_their_voices(path):
    score, before, new, truth, start = hidden_next_bars(path, 4, 4)
    where = voices.place_notes(before, new, start)
    right = sum(w == t for w, t in zip(where, truth)) / len(new)
    first = sum(t == next(i for i, b in enumerate(before) if b) for t in truth) / len(new)
    assert first < 0.4  # what "the first track of the instrument" gave
    # bwv1.6 has a fifth part, a horn in the alto's register, crossing it: the two are told apart less often
    need = 0.8 if sum(1 for b in before if b) == 4 else 0.6
    assert right >= need, (path.name, right)


def test_a_pop_songs_true_next_bars_keep_melody_bridge_and_piano():
    score, before, new, truth, start = hidden_next_bars(POP, 16, 8)
    names = [t.name for t in score.tracks(include_empty=True)]
    where = voices.place_notes(before, new, start)
    right = sum(w == t for w, t in zip(where, truth)) / len(new)
    assert right >= 0.7, right
    melody = names.index("MELODY")
    placed_melody = [n for n, w in zip(new, where) if w == melody]
    assert placed_melody and top_share(placed_melody, new) >= 0.6


def test_untangle_keeps_a_tracks_notes_of_one_pitch_apart():
    held = Note(0, 960, 60)
    new = [Note(480, 240, 60), Note(600, 480, 62), Note(720, 480, 62), Note(0, 100, 60)]
    out = voices.untangle([Note(n.start, n.duration, n.pitch) for n in new], [held])
    assert [(n.start, n.duration, n.pitch) for n in out] == [(480, 480, 60), (600, 120, 62), (720, 480, 62)]


@pytest.fixture(scope="module")
def bundled():
    return Generator.load(str(base_model()))


def saved_track_names(score) -> list[str]:
    back, _ = read_midi(score_to_bytes(score))
    return [t.name for t in back.tracks()]


def test_the_bundled_model_continues_each_chorale_voice_in_its_own_track(bundled):
    prompt, _ = read_midi(CHORALES[0])
    cut = prompt.bar_starts()[6]
    stream = bundled.stream(prompt.slice(0, cut), bars=3, variations=2, sampling=SamplingConfig(seed=5))
    notes = [[], []]
    for item in stream:
        notes[item.variation].append(item.note)
    names = [t.name for t in prompt.slice(0, cut).tracks()]
    for v in notes:
        assert v
        piece = stream.score(v)
        assert saved_track_names(piece) == names  # no "Soprano 2": a save invents no track
        new = {t.name: [n for n in t.notes if n.start >= stream.start_tick] for t in piece.tracks()}
        assert sum(1 for k in ("Soprano", "Alto", "Tenor", "Bass") if new[k]) >= 3, {k: len(x) for k, x in new.items()}
        means = [sum(n.pitch for n in new[k]) / len(new[k]) for k in ("Soprano", "Bass") if new[k]]
        assert len(means) < 2 or means[0] > means[1]  # the soprano stays above the bass


def test_the_bundled_model_keeps_the_melody_the_melody_in_a_pop_song(bundled):
    prompt, _ = read_midi(POP)
    cut = prompt.bar_starts()[24]
    stream = bundled.stream(prompt.slice(0, cut), bars=4, variations=3, sampling=SamplingConfig(seed=2))
    notes = [[], [], []]
    for item in stream:
        notes[item.variation].append(item.note)
    shares = []
    for v in notes:
        piece = stream.score(v)
        assert saved_track_names(piece) == ["MELODY", "BRIDGE", "PIANO"]  # no "MELODY 2"
        melody = [n for t in piece.tracks() if t.name == "MELODY" for n in t.notes if n.start >= stream.start_tick]
        assert 0 < len(melody) < len(v)  # the melody goes on, and not every note is melody
        shares.append(top_share(melody, v))
    assert sum(shares) / len(shares) >= 0.6, shares  # the held-out truth: 73%; all notes in MELODY: 35%

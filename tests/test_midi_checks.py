"""The hanging-note check the live tests rely on: each note-on needs its own note-off."""
import mido

from tests.midi_checks import sounding


def msgs(*spec):
    return [(i * 0.01, mido.Message(kind, channel=ch, note=note, velocity=vel))
            for i, (kind, ch, note, vel) in enumerate(spec)]


def test_a_key_struck_twice_and_released_once_still_sounds():
    assert sounding(msgs(("note_on", 0, 60, 80), ("note_on", 0, 60, 90), ("note_off", 0, 60, 0))) == {(0, 60): 1}


def test_velocity_zero_note_on_releases_and_stray_offs_are_ignored():
    played = msgs(("note_off", 0, 60, 0), ("note_on", 0, 60, 80), ("note_on", 0, 60, 0),
                  ("note_on", 1, 60, 80), ("note_off", 0, 60, 0))
    assert sounding(played) == {(1, 60): 1}  # the key is told apart by channel; the extra off frees nothing
    assert sounding(played + msgs(("note_off", 1, 60, 64))) == {}

"""The hanging-note check the live tests rely on: each note-on needs its own note-off."""
import mido

from tests.midi_checks import sounding, sounding_at_a_synth


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


def test_all_notes_off_ends_its_channels_keys_only_at_a_synth():
    played = msgs(("note_on", 0, 60, 80), ("note_on", 0, 60, 90), ("note_on", 1, 62, 80))
    all_off = [(1.0, mido.Message("control_change", channel=0, control=123, value=0))]
    assert sounding(played + all_off) == {(0, 60): 2, (1, 62): 1}  # note-offs are what `sounding` counts
    assert sounding_at_a_synth(played + all_off) == {(1, 62): 1}  # channel 1 had no All Notes Off

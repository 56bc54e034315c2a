"""One spelling of pitch names (core.score.pitch_name) for the roll's keyboard, the CLI and the metrics."""
from core.evaluate import music
from core.score import pitch_name


def test_pitches_are_spelt_one_way_with_c4_as_middle_c():
    assert [pitch_name(p) for p in (60, 61, 63, 66, 68, 70, 21, 0, 127)] == \
        ["C4", "C#4", "Eb4", "F#4", "Ab4", "Bb4", "A0", "C-1", "G9"]
    assert music.key_name((3, "minor", 0.8)) == "Eb minor"

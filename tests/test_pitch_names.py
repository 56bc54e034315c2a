"""One spelling of pitch names (core.score.pitch_name) for the roll's keyboard, the CLI and the metrics."""
from core.evaluate import music
from core.score import pitch_name


def test_pitches_are_spelt_one_way_with_c4_as_middle_c():
    assert [pitch_name(p) for p in (60, 61, 63, 66, 68, 70, 21, 0, 127)] == \
        ["C4", "C#4", "Eb4", "F#4", "Ab4", "Bb4", "A0", "C-1", "G9"]
    assert music.key_name((3, "minor", 0.8)) == "Eb minor"


def test_no_other_module_spells_pitch_classes():
    """The twelve names are written once, in core.score: a module that needs a name calls pitch_name."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    spellers = []
    for path in [*(root / "core").rglob("*.py"), *(root / "musicapp").rglob("*.py")]:
        strings = {node.value for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        if {"C#", "Eb", "F#", "Ab", "Bb"} <= strings or {"C#", "D#", "F#", "G#", "A#"} <= strings:
            spellers.append(path.relative_to(root).as_posix())
    assert spellers == ["core/notes.py"]

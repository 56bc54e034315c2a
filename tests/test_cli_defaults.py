"""Every CLI verb that takes --model works without it, on the bundled base model."""
from __future__ import annotations

import json
from pathlib import Path

import mido

from core.cli import build_parser, main as cli_main

POP = Path(__file__).parent / "data" / "pop909" / "002.mid"


def test_model_is_optional_for_every_verb_that_takes_one():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    with_model = [name for name, sub in verbs.items()
                  if any("--model" in a.option_strings for a in sub._actions)]
    assert {"generate", "eval", "live", "jam", "infill", "accompany"} <= set(with_model)
    for name in with_model:
        option = next(a for a in verbs[name]._actions if "--model" in a.option_strings)
        assert not option.required, name


def test_generate_and_eval_without_model_use_the_bundled_one(tmp_path, capsys):
    out = tmp_path / "out.mid"
    assert cli_main(["generate", "--prompt", str(POP), "--bars", "1", "--seed", "2", "-o", str(out)]) == 0
    assert any(m.type == "note_on" for t in mido.MidiFile(out).tracks for m in t)
    capsys.readouterr()
    assert cli_main(["eval", str(POP), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bits_per_note"] > 0

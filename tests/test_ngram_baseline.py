"""bench/ngram_baseline.py on a few chorales: finite bits, a trained piece cheaper than an unseen one, and a
held-out file that is a training file (by path or as a copy) refused."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from bench.ngram_baseline import fit, main, model_tokenizer, score
from tests.folders import chorale_folder


def test_ngram_baseline(tmp_path, capsys):
    train = chorale_folder(tmp_path, "train", 4)
    pieces = sorted(train.glob("*.mid"))
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    shutil.move(pieces[-1], unseen / pieces[-1].name)  # trained on 3, the 4th unseen
    out = tmp_path / "out.json"
    assert main(["--train", str(train), "--set", f"unseen={unseen}", "--order", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["fit"]["train_files"] == 3 and r["fit"]["train_tokens"] > 0
    bits = r["sets"]["unseen"]["bits_per_note"]
    assert math.isfinite(bits) and 0 < bits < r["sets"]["unseen"]["tokens"] * 11 / r["sets"]["unseen"]["notes"]
    assert "| unseen | 1 | 0 |" in capsys.readouterr().out

    tok = model_tokenizer()
    ngram, _ = fit(pieces[:3], tok, 3)
    seen, new = (score(ngram, [f], tok)["bits_per_note"] for f in (pieces[0], unseen / pieces[-1].name))
    assert seen < 0.75 * new

    copy = tmp_path / "copy.mid"
    copy.write_bytes(pieces[0].read_bytes())
    (tmp_path / "list.txt").write_text(f"{pieces[1]}\n")
    for held in (tmp_path / "list.txt", copy):
        with pytest.raises(SystemExit, match="training files"):
            main(["--train", str(train), "--set", f"x={held}", "--order", "3"])

"""core.library: what the model picker lists (headless; the GUI passes the folders in)."""
from __future__ import annotations

import sys

import pytest

from core import library


def test_lists_bundled_runs_and_hand_copied_models(tmp_path):
    res, user = tmp_path / "res", tmp_path / "user"
    res.mkdir()
    (res / "base.pth").write_bytes(b"x")
    (res / "base.json").write_text('{"description": "bundled"}')
    run = library.new_run(user, "My jigs", "lora", res / "base.pth", tmp_path)
    assert library.list_models(res, user) == [library.ModelEntry("base", "base", res / "base.pth")]  # unfinished
    (run / "model.pth").write_bytes(b"x")
    style_run = library.new_run(user, "My jigs", "state", res / "base.pth")
    assert style_run.name == "My-jigs-2"
    (style_run / "style.pth").write_bytes(b"x")
    (user / "styles").mkdir()
    (user / "styles" / "hand.pth").write_bytes(b"x")
    entries = library.list_models(res, user)
    assert [(e.name, e.kind) for e in entries][0] == ("base", "base")
    assert entries[0].info == {"description": "bundled"}
    kinds = {e.name: e for e in entries[1:]}
    assert kinds["My jigs"].kind == "finetuned" and kinds["My jigs 2"].kind == "style"
    assert kinds["My jigs 2"].base == res / "base.pth"
    assert kinds["hand"].kind == "style" and kinds["hand"].base is None
    assert kinds["My jigs"].label == "My jigs (fine-tuned, paused)"


def test_the_picker_lists_each_style_under_its_base_model(tmp_path):
    res, user = tmp_path / "res", tmp_path / "user"
    res.mkdir()
    for name in ("alpha", "beta"):
        (res / f"{name}.pth").write_bytes(b"x")
    runs = {}
    for name, mode, base in (("on beta", "style", res / "beta.pth"), ("mine", "full", res / "alpha.pth"),
                             ("on alpha", "style", res / "alpha.pth"), ("lost", "style", tmp_path / "gone.pth"),
                             ("on mine", "style", None)):
        runs[name] = run = library.new_run(user, name, mode, base)
        (run / ("style.pth" if mode == "style" else "model.pth")).write_bytes(b"x")
        library.update_run(run, finished=True, created=len(runs))
    library.update_run(runs["on mine"], base=str(runs["mine"] / "model.pth"))
    (user / "styles").mkdir()
    (user / "styles" / "hand.pth").write_bytes(b"x")
    order = [(e.name, depth) for e, depth in library.picker_order(library.list_models(res, user))]
    assert order == [("alpha", 0), ("on alpha", 1), ("hand", 1), ("beta", 0), ("on beta", 1),
                     ("mine", 0), ("on mine", 1), ("lost", 0)]


def test_resumable_runs_and_finishing(tmp_path):
    user = tmp_path / "user"
    run = library.new_run(user, "long", "full", None)
    assert library.resumable_runs(user) == []
    (run / "resume.pt").write_bytes(b"x")
    assert library.resumable_runs(user) == [run]
    library.update_run(run, finished=True)
    assert library.resumable_runs(user) == []
    assert library.run_info(run)["name"] == "long"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders are Linux")
def test_default_user_dir_is_per_user(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert library.default_user_dir() == tmp_path / "rwkv-music"

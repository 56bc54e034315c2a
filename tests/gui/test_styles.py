"""Styles in the app: listed under their base model, switched on the loaded model without reloading it,
and a strength slider (0% = the base model)."""
from __future__ import annotations

from core import library
from tests.gui.models import make_tiny_checkpoint


def test_styles_switch_on_the_loaded_base_model_and_take_a_strength(make_window, app_paths, qtbot):
    from core.network.checkpoint import load_checkpoint
    from core.network.style import save_style
    from tests.small_models import random_style

    base = make_tiny_checkpoint(app_paths.resources / "tiny-base.pth")
    model, _ = load_checkpoint(str(base))
    for seed, name in enumerate(("jigs", "reels")):
        run = library.new_run(app_paths.user_data, name, "style", base)
        save_style(str(run / library.STYLE_FILE), random_style(model, seed), model, {"name": name})
        library.update_run(run, finished=True)
    w = make_window(start=True)
    g = w.generation
    qtbot.waitUntil(lambda: g.generator is not None, timeout=120000)
    labels = [w.model_box.itemText(i) for i in range(w.model_box.count())]
    assert labels[0] == "tiny-base (base model)"
    assert sorted(label.strip() for label in labels[1:]) == ["↳ jigs (style)", "↳ reels (style)"]
    loaded = g.generator.model
    assert not w.strength.isEnabled() and g.generator.style is None

    def choose(name: str) -> None:
        index = next(i for i, m in enumerate(w.models) if m.name == name)
        w.model_box.setCurrentIndex(index)
        w._on_model_chosen(index)
        qtbot.waitUntil(lambda: g.generator is not None, timeout=60000)

    styled = g.generator.styled  # the loaded model's one owner of its style
    for name in ("jigs", "reels"):
        choose(name)
        assert g.generator.model is loaded and g.generator.styled is styled  # the base was not loaded again
        assert g.generator.style.name == name and styled.applied[0].name == name and styled.offset is not None
        assert w.strength.isEnabled()
    w.strength.setValue(0)
    assert g.generator.strength == 0.0 and styled.offset is None  # 0%: the base model itself
    w.strength.setValue(50)
    assert g.generator.strength == 0.5 and styled.offset is not None
    assert "50%" in w.strength_label.text()
    choose("tiny-base")
    assert g.generator.model is loaded and g.generator.style is None and styled.applied is None
    assert styled.offset is None
    assert not w.strength.isEnabled()

"""Styles (core/network/style.py) on the real RWKV-7 network: the state offset in every form of the model (parallel,
prefill + torch-op step, fused C++ step), strength 0 == the base model exactly, switching styles without a
reload, the file's size limit and its refusal on another base model, and the style training mode end to end
(pause, resume, export, CLI)."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core import cli
from core.generate import Generator, SamplingConfig
from core.network.checkpoint import CheckpointError, load_checkpoint, model_fingerprint, save_checkpoint, save_state_file
from core.network.step import CppStepper, TorchStepper
from core.network.style import MAX_STYLE_BYTES, StyledModel, StyleError, load_style, save_style
from core.training.style_tuning import StyleTuner, plan_style
from core.training.train import run_training
from tests.small_models import odd_sized_model, perturbed_model, random_state, random_style, run_both
from tests.small_models import style_config as _config

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "rwkv7-music-base.pth"


def close(a, b, tol):
    scale = max(1.0, b.abs().max().item())
    assert (a - b).abs().max().item() <= tol * scale


# --- the maths -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol, offset_rank", [(torch.float32, 1e-5, 0), (torch.float64, 1e-12, 0),
                                                     (torch.float32, 1e-5, 3)])
def test_offset_parallel_equals_prefill_then_torch_op_steps(dtype, tol, offset_rank):
    model = perturbed_model(seed=21).to(dtype)
    B, T, split = 2, 30, 11
    start = random_state(model, B)
    styled = StyledModel(model, random_style(model, 1, offset_rank=offset_rank), check=False)
    assert styled.offset is not None and styled.initial_state is not None
    idx = torch.randint(0, 97, (B, T), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = styled(idx, start)
        plain = styled(idx)  # from the style's initial state
    last, state = styled.prefill(idx[:, :split], start)
    close(last, full[:, split - 1], tol)
    stepped = []
    for t in range(split, T):
        logits, state = styled.step(idx[:, t], state, "step-torch")
        stepped.append(logits)
    assert isinstance(styled.prepare_step("step-torch"), TorchStepper)
    close(torch.stack(stepped, 1), full[:, split:], tol)
    # from no state: prefill and the parallel form both start from the style's initial state
    last, _ = styled.prefill(idx[:, :split])
    close(last, plain[:, split - 1], tol)

    # the offset acts at every token, the late ones included, and only through the offset term: the network
    # (the style's weights merged) without it
    with torch.no_grad():
        without = model(idx, start)
    assert (full[:, -5:] - without[:, -5:]).abs().max() > 1e-3


def test_fused_step_with_offset_matches_the_torch_op_step_on_the_bundled_model():
    model, _ = load_checkpoint(str(BUNDLED))
    styled = StyledModel(model, random_style(model, 2), check=False)
    g = torch.Generator().manual_seed(4)
    prompt = torch.randint(0, model.config.vocab_size, (2, 40), generator=g)
    tokens = torch.randint(0, model.config.vocab_size, (2, 60), generator=g)
    _, start = styled.prefill(prompt)
    (fused, f_state), (ref, r_state) = run_both(model, tokens, start, offset=styled.offset)
    close(fused, ref, 1e-5)
    for a, b in zip(f_state.wkv, r_state.wkv):
        close(a, b, 1e-5)
    with torch.no_grad():
        full = styled(torch.cat([prompt, tokens], 1))
    close(fused, full[:, 40:], 1e-5)


def test_fused_step_with_a_low_rank_offset_on_odd_sizes():
    model = odd_sized_model()
    styled = StyledModel(model, random_style(model, 5, parts=("offset",), offset_rank=2), check=False)
    tokens = torch.randint(0, 53, (3, 25), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = styled(tokens)
    s = styled.init_state(3)
    outs = []
    for t in range(tokens.shape[1]):
        logits, s = styled.step(tokens[:, t], s)
        outs.append(logits)
    assert isinstance(styled.prepare_step(), CppStepper)
    close(torch.stack(outs, 1), full, 1e-5)


# --- one owner ------------------------------------------------------------------------------------------------
STYLE_STATE = re.compile(r"_style_backup|_applied_style|\bstyle_offset\b|\bstyle_state\b")
ROOT = Path(__file__).resolve().parents[1]


def test_no_module_outside_the_styled_model_touches_a_models_style_state():
    """A style's state has one owner, core.network.style.StyledModel: no other module reads or writes style state
    on the network (the offset and the initial state reach it as arguments)."""
    sources = [p for folder in ("core", "musicapp", "bench", "tools") for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(sources) > 50
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sources if p != ROOT / "core" / "network" / "style.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if STYLE_STATE.search(line)]
    assert found == []


def test_applying_a_style_leaves_no_state_on_the_network():
    model = perturbed_model(seed=3)
    attributes = {name: id(value) for name, value in vars(model).items()}
    styled = StyledModel(model, random_style(model, 1), check=False)
    assert styled.offset is not None and styled.initial_state is not None and styled.base_weights()
    assert {name: id(value) for name, value in vars(model).items()} == attributes
    styled.remove()
    assert {name: id(value) for name, value in vars(model).items()} == attributes


def test_strength_zero_and_removal_give_the_base_logits_exactly():
    model, _ = load_checkpoint(str(BUNDLED))
    styled = StyledModel(model)
    idx = torch.randint(0, model.config.vocab_size, (1, 50), generator=torch.Generator().manual_seed(6))

    def outputs():
        with torch.no_grad():
            par = styled(idx)
        logits, state = styled.prefill(idx[:, :30])
        steps = [logits]
        for t in range(30, 50):
            logits, state = styled.step(idx[:, t], state)
            steps.append(logits)
        return par, torch.stack(steps)

    base = outputs()
    style = random_style(model, 7, size=0.005)
    styled.apply(style, 0.0)
    assert styled.applied == (style, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(outputs(), base))
    styled.set_strength(1.0)
    full = outputs()
    assert (full[0] - base[0]).abs().max() > 1e-2
    styled.set_strength(0.5)
    half = outputs()
    assert 0 < (half[0] - base[0]).abs().mean() < (full[0] - base[0]).abs().mean()
    styled.remove()
    assert styled.applied is None and styled.offset is None and styled.initial_state is None
    assert all(torch.equal(a, b) for a, b in zip(outputs(), base))


def test_offset_and_every_part_get_gradients_in_the_tuner():
    model = perturbed_model(seed=8)
    tuner = StyleTuner(model, ("lora", "offset", "bias", "state"), lora_rank=2, offset_rank=4)
    idx = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(9))
    tuner.train()  # the model was eval()'d, prefill has no backward
    attributes = {name: id(value) for name, value in vars(model).items()}
    tuner(idx).logsumexp(-1).sum().backward()
    groups = tuner.optimizer_groups(1e-3, 0.01)
    assert [g["part"] for g in groups] == ["lora", "offset", "bias", "state"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2, 1e-3, 2e-2])  # core.training.train_config.PART_LR_SCALE
    for g in groups:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g["params"]), g["part"]
    # the tuner leaves the model as it found it: the offset and the state are passed as values
    assert {name: id(value) for name, value in vars(model).items()} == attributes
    assert {p for g in groups for p in g["params"]} == {p for p in tuner.parameters() if p.requires_grad}


def test_a_saved_style_applied_to_the_model_gives_the_tuners_logits(tmp_path):
    """Every part goes through the file into the loaded model's weights, state offset and initial state: the
    parallel forward and the step then give what the tuner trained."""
    tuner = StyleTuner(load_checkpoint(str(BUNDLED))[0], ("lora", "offset", "bias", "state"), 4, 0)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in tuner.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() == 4 else 0.02))
    idx = torch.randint(0, tuner.model.config.vocab_size, (1, 40), generator=g)
    with torch.no_grad():
        trained = tuner(idx)
    style = tuner.export()
    assert style.parts == ("lora", "offset", "bias", "state")
    save_style(str(tmp_path / "s.pth"), style, base_fingerprint=tuner.base_fingerprint)
    model, _ = load_checkpoint(str(BUNDLED))
    base = model(idx).detach()
    loaded = load_style(str(tmp_path / "s.pth"), model)
    assert loaded.parts == style.parts
    styled = StyledModel(model, loaded)
    with torch.no_grad():
        parallel = styled(idx, state=model.init_state(1, wkv=styled.initial_state))
        logits, state = styled.prefill(idx[:, :30])
        steps = [logits]
        for t in range(30, 39):
            logits, state = styled.step(idx[:, t], state)
            steps.append(logits)
    assert (trained - base).abs().max() > 0.1  # the style changes the logits ...
    close(parallel, trained, 2e-3)  # ... and the file keeps that change (LoRA in fp16)
    close(torch.cat(steps), parallel[0, 29:39], 1e-4)


# --- the file --------------------------------------------------------------------------------------------------
def test_style_file_fits_1mb_and_is_refused_on_another_base(tmp_path):
    model, _ = load_checkpoint(str(BUNDLED))
    parts = ("lora", "offset", "bias", "state")
    lora_rank, offset_rank = plan_style(model, parts)
    assert (lora_rank, offset_rank) == (12, 0)  # the bundled model's default style: rank-12 LoRA, full offset
    tuner = StyleTuner(model, parts, lora_rank, offset_rank)
    with torch.no_grad():
        for p in tuner.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    style = tuner.export()
    path = tmp_path / "style.pth"
    size = save_style(str(path), style, meta={"name": "jigs"})
    assert size == path.stat().st_size <= MAX_STYLE_BYTES
    base, _ = load_checkpoint(str(BUNDLED))
    loaded = load_style(str(path), base)  # the fresh base: the same fingerprint
    assert loaded.parts == parts and loaded.name == "jigs"
    assert set(loaded.lora) == set(style.lora) and loaded.meta["lora_rank"] == 12
    assert "blocks.1.att.w1" in loaded.lora and "blocks.0.att.v1" not in loaded.lora  # STYLE_TARGETS

    other = load_checkpoint(str(BUNDLED))[0]
    with torch.no_grad():
        other.head.weight[0, 0] += 1e-3  # one weight differs: another base model
    with pytest.raises(StyleError, match="another base model"):
        load_style(str(path), other)
    with pytest.raises(StyleError, match="another base model"):
        StyledModel(other, loaded)  # checked when applied too
    with pytest.raises(StyleError, match="another base model.*another shape .n_layer 6 there, 2 here"):
        load_style(str(path), perturbed_model())
    torch.save({"wkv": torch.zeros(2)}, tmp_path / "foreign.pth")
    with pytest.raises(StyleError, match="not a style file"):
        load_style(str(tmp_path / "foreign.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_style(str(tmp_path / "junk.pth"))
    with pytest.raises(StyleError, match="a model checkpoint, not a style"):
        load_style(str(BUNDLED))
    # a style over the limit is refused before anything is written
    with pytest.raises(StyleError, match="over the"):
        save_style(str(tmp_path / "big.pth"), style, max_bytes=100_000)
    assert not (tmp_path / "big.pth").exists()


def test_fingerprint_is_the_base_models_while_a_style_is_applied(tmp_path):
    model, _ = load_checkpoint(str(BUNDLED))
    base_print = model_fingerprint(model)
    save_style(str(tmp_path / "s.pth"), random_style(model, 3), model)
    styled = StyledModel(model, load_style(str(tmp_path / "s.pth"), model))
    assert model_fingerprint(styled) == base_print  # the merged weights are not the identity ...
    assert model_fingerprint(model) != base_print  # ... which the network alone holds
    save_style(str(tmp_path / "t.pth"), random_style(model, 4), styled)  # saved while styled
    other = load_style(str(tmp_path / "t.pth"), styled)  # switching: checked against the base, not the merge
    assert other.base_fingerprint == base_print
    styled.apply(other)
    assert styled.applied[0] is other
    styled.remove()
    assert model_fingerprint(model) == base_print


def test_an_older_state_file_loads_as_a_style(tmp_path):
    model = perturbed_model(seed=10)
    cfg = model.config
    wkv = torch.randn(cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size)
    save_state_file(str(tmp_path / "old.pth"), wkv, model)
    style = load_style(str(tmp_path / "old.pth"), model)
    assert style.parts == ("state",) and torch.equal(style.state, wkv)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_style_learnt_on_the_gpu_loads_on_the_cpu(tmp_path):
    cpu_model, _ = load_checkpoint(str(BUNDLED))
    gpu_model, _ = load_checkpoint(str(BUNDLED), device="cuda")
    tuner = StyleTuner(gpu_model, ("lora", "offset", "bias", "state"), 4, 0).cuda()
    style = tuner.export()
    save_style(str(tmp_path / "gpu.pth"), style, base_fingerprint=tuner.base_fingerprint)
    styled = StyledModel(cpu_model, load_style(str(tmp_path / "gpu.pth"), cpu_model))
    assert styled.offset.device.type == "cpu"


# --- switching without a reload -----------------------------------------------------------------------------------
def test_generator_switches_styles_on_the_loaded_model(tiny_checkpoint, tmp_path):
    gen = Generator.load(tiny_checkpoint)
    model = gen.model
    a, b = random_style(model, 11), random_style(model, 12)
    for name, s in (("a", a), ("b", b)):
        save_style(str(tmp_path / f"{name}.pth"), s, model)
    ids = gen.tokenizer.encode(gen_prompt())
    base_logits, _ = gen._prefill(ids)
    gen.set_style(str(tmp_path / "a.pth"))
    a_logits, _ = gen._prefill(ids)
    gen.set_style(str(tmp_path / "b.pth"), 0.7)
    b_logits, _ = gen._prefill(ids)
    assert gen.model is model and gen.strength == 0.7
    assert not torch.allclose(a_logits, base_logits) and not torch.allclose(a_logits, b_logits)
    gen.set_strength(0.0)
    assert torch.equal(gen._prefill(ids)[0], base_logits)
    gen.set_style(None)
    assert torch.equal(gen._prefill(ids)[0], base_logits)
    # the same prompt and seed: strength 0 continues exactly as the base model
    plain = Generator.load(tiny_checkpoint).generate(gen_prompt(), bars=1, sampling=SamplingConfig(seed=3))
    gen.set_style(str(tmp_path / "a.pth"), 0.0)
    zero = gen.generate(gen_prompt(), bars=1, sampling=SamplingConfig(seed=3))
    assert [(n.start, n.pitch, n.duration) for n in zero[0].notes] == [(n.start, n.pitch, n.duration)
                                                                       for n in plain[0].notes]
    with pytest.raises(ValueError, match="strength"):
        gen.set_strength(-1)


def gen_prompt():
    from core.score import Note, Score, TempoChange, TimeSignature
    return Score([Note(i * 240, 240, 60 + (i * 7) % 12, 90) for i in range(16)], [TempoChange(0, 120)],
                 [TimeSignature(0, 4, 4)])


# --- training -------------------------------------------------------------------------------------------------------


def test_a_large_folder_learns_a_style_at_the_higher_rate(style_base, tmp_path, monkeypatch):
    """STYLE_LARGE_FOLDER: the default rate doubles for a folder of enough tokens; a given --lr is kept."""
    from core.training import train_config
    from core.training.train_config import DEFAULT_LR
    folder, base = style_base

    def first_lr(out, threshold, **kw):
        monkeypatch.setattr(train_config, "STYLE_LARGE_FOLDER", (threshold, 2.0))
        events = []
        run_training(replace(_config(folder, base, tmp_path / out, warmup_steps=0, **kw), steps=2), events.append)
        return next(e.lr for e in events if e.kind == "step" and e.lr is not None)

    small = first_lr("small", 10**9)  # this folder (three pieces) is below the threshold
    assert small == pytest.approx(DEFAULT_LR["style"])
    assert first_lr("large", 1) == pytest.approx(2 * small)
    assert first_lr("given", 1, lr=1e-3) == pytest.approx(1e-3)


def test_style_mode_pauses_resumes_and_exports_what_it_trained(style_base, tmp_path):
    folder, base = style_base
    first, second, ref = [], [], []
    run_training(_config(folder, base, tmp_path / "paused", stop_at_step=4), first.append)
    assert first[-1].kind == "cancelled"
    paths = run_training(_config(folder, base, tmp_path / "paused", resume=True), second.append)
    ref_paths = run_training(_config(folder, base, tmp_path / "straight"), ref.append)
    losses = {e.step: e.loss for e in first + second if e.kind == "step" and e.loss is not None}
    ref_losses = {e.step: e.loss for e in ref if e.kind == "step" and e.loss is not None}
    assert sorted(losses) == list(range(1, 9)) == sorted(ref_losses)
    for step in losses:
        assert losses[step] == pytest.approx(ref_losses[step], rel=1e-5, abs=1e-6), step

    model, _ = load_checkpoint(base)
    style, ref_style = load_style(paths["result"], model), load_style(ref_paths["result"], model)
    assert style.parts == ("lora", "offset", "bias", "state") and style.meta["training"]["mode"] == "style"
    assert Path(paths["result"]).name == "style.pth" and not (tmp_path / "paused" / "model.pth").exists()
    for (name, d), (_, rd) in zip(style.weight_deltas(), ref_style.weight_deltas()):
        torch.testing.assert_close(d, rd, rtol=2e-3, atol=2e-5, msg=name)  # LoRA is stored in fp16
    torch.testing.assert_close(style.offset_matrix(), ref_style.offset_matrix(), rtol=1e-5, atol=1e-6)
    assert style.offset_matrix().abs().sum() > 0 and style.state.abs().sum() > 0 and style.deltas

    # applied to the base, the file reproduces what training saw (up to LoRA's fp16 storage)
    tuned = _config(folder, base, tmp_path / "x")
    from core.training.train_model import wrap
    trainer_model, _ = load_checkpoint(base)
    tuner = wrap(trainer_model, tuned)
    tuner.load_state_dict(torch.load(Path(paths["resume"]), weights_only=True)["module"])
    idx = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = tuner(idx)
        got = StyledModel(model, style)(idx)
    close(got, expected, 2e-3)


def test_cli_style_mode_with_a_time_budget_and_the_style_verbs(style_base, tmp_path, capsys):
    folder, base = style_base
    out = tmp_path / "mine"
    assert cli.main(["train", str(folder), "--out", str(out), "--base", base, "--mode", "style", "--time-budget",
                     "3s", "--ctx", "32", "--batch", "2", "--style-parts", "offset+state"]) == 0
    style_path = out / "style.pth"
    assert style_path.exists() and style_path.stat().st_size <= MAX_STYLE_BYTES
    assert load_style(str(style_path)).parts == ("offset", "state")
    capsys.readouterr()
    piece = str(sorted(folder.rglob("*.mid"))[0])
    bits = {}
    for strength in ("0", "1"):
        # the network alone: the style's folder memory is not scaled by strength (test_memory covers it)
        assert cli.main(["eval", "--model", base, "--style", str(style_path), "--style-strength", strength, piece,
                         "--json", "--no-memory"]) == 0
        bits[strength] = json.loads(capsys.readouterr().out)["bits_per_token"]
    assert cli.main(["eval", "--model", base, piece, "--json", "--no-memory"]) == 0
    assert json.loads(capsys.readouterr().out)["bits_per_token"] == bits["0"] != bits["1"]

    # another base model: one clear line, exit status 2
    other = tmp_path / "other.pth"
    model, meta = load_checkpoint(base)
    with torch.no_grad():
        model.emb.weight.add_(0.01)
    save_checkpoint(model, str(other), meta)
    assert cli.main(["generate", "--model", str(other), "--style", str(style_path), "--prompt", piece,
                     "-o", str(tmp_path / "o.mid")]) == 2
    assert "another base model" in capsys.readouterr().err
    assert cli.main(["generate", "--model", base, "--style", str(style_path), "--style-strength", "0.5",
                     "--prompt", piece, "--bars", "1", "-o", str(tmp_path / "o.mid")]) == 0
    with pytest.raises(SystemExit):
        cli.main(["eval", "--model", base, "--style", str(style_path), "--style-strength", "-1", piece])
    assert "strength" in capsys.readouterr().err


def test_an_unknown_style_part_is_one_clear_error(style_base, tmp_path, capsys):
    folder, base = style_base
    assert cli.main(["train", str(folder), "--out", str(tmp_path / "x"), "--base", base, "--mode", "style",
                     "--steps", "1", "--style-parts", "lora+colour"]) == 2
    assert "unknown style part(s) colour" in capsys.readouterr().err

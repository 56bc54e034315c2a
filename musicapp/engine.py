"""The one place where the GUI meets core.generate (imported lazily: it pulls in torch).

Kept to plain calls so the GUI holds no sampling or model logic of its own."""
from __future__ import annotations


def load_generator(checkpoint: str, style: str | None = None, strength: float = 1.0):
    import torch

    from core.generate import Generator
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return Generator.load(checkpoint, style, strength=strength, device=device)


def switch_style(generator, style: str | None, strength: float = 1.0) -> None:
    """Another style file (or none) on the generator's loaded model, at `strength`: no base model reload."""
    generator.set_style(style, strength)


def open_stream(generator, prompt, start_tick: int, params: dict):
    """A core.generate ContinuationStream of (variation, note); its `start_tick` is the bar line where
    the continuation really begins (at or after `start_tick`)."""
    from core.generate import SamplingConfig
    sampling = SamplingConfig(temperature=params["temperature"], top_p=params["top_p"], seed=params.get("seed"))
    return generator.stream(prompt, bars=params["bars"], at_tick=start_tick, variations=params["variations"],
                            sampling=sampling, instruments=params.get("instruments"))

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
    sampling = _sampling(params)
    return generator.stream(prompt, bars=params["bars"], at_tick=start_tick, variations=params["variations"],
                            sampling=sampling, instruments=params.get("instruments"))


def open_infill(generator, score, start_tick: int, end_tick: int, params: dict, locked=(), part=None):
    """A core.infill InfillStream: the bars [start_tick, end_tick) regenerated (keeping the `locked`
    notes and the instruments the model is not asked to write), or with `part` = (program, drum) a new
    part over those bars. Raises ValueError with a message for the user (a model without infill tokens,
    an empty range)."""
    from core.infill import add_part, infill
    sampling = _sampling(params)
    if part is not None:
        return add_part(generator, score, part, start_tick, end_tick, variations=params["variations"],
                        sampling=sampling)
    return infill(generator, score, start_tick, end_tick, variations=params["variations"], sampling=sampling,
                  instruments=params.get("instruments"), locked=list(locked))


def _sampling(params: dict):
    from core.sampling_config import DEFAULT_MEMORY, SamplingConfig
    return SamplingConfig(temperature=params["temperature"], top_p=params["top_p"], seed=params.get("seed"),
                          memory=params.get("memory", DEFAULT_MEMORY), grid=params.get("grid", True))


def replaced_by(stream, note) -> bool:
    """Whether accepting the stream's notes removes `note` of the document (in the range, not locked,
    of an instrument the model writes); the rule is core.infill's."""
    return stream.replaces(note)

"""The one place where the GUI meets core.generate (imported lazily: it pulls in torch).

Kept to plain calls so the GUI holds no sampling or model logic of its own."""
from __future__ import annotations

import threading


def load_generator(checkpoint: str, style: str | None = None):
    from core import generate
    return generate.Generator.load(checkpoint, style=style)


def stream(generator, prompt, start_tick: int, params: dict, cancel: threading.Event):
    """(variation, Note) pairs of a continuation of `prompt` from `start_tick`, until done or cancelled."""
    it = generator.stream(prompt, start_tick, bars=params["bars"], temperature=params["temperature"],
                          top_p=params["top_p"], seed=params.get("seed"), variations=params["variations"],
                          instruments=params.get("instruments"))
    try:
        for item in it:
            if cancel.is_set():
                return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()

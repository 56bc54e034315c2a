"""How notes are sampled: the defaults every caller (CLI, app, jam, benchmarks) reads from here. No torch,
so the GUI and the argument parsers can use it without loading the model's stack."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.95
DEFAULT_MEMORY = 1.0


@dataclass
class SamplingConfig:
    temperature: float = DEFAULT_TEMPERATURE  # 0: always the most likely valid token
    top_p: float = DEFAULT_TOP_P  # nucleus: the smallest set of tokens with this much probability
    top_k: int = 0  # 0: no limit
    seed: int | None = None  # None: a fresh random seed
    memory: float = DEFAULT_MEMORY  # how strongly the piece and folder memories steer (core.memory); 0: off
    grid: bool = True  # onsets keep to the places within the beat that the piece's own take (core.idiom.onset_grid)


__all__ = ["SamplingConfig", "DEFAULT_TEMPERATURE", "DEFAULT_TOP_P", "DEFAULT_MEMORY"]

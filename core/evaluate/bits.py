"""Bits per note, the measure every evaluation reports, computed here and nowhere else (torch-free).

A model's loss is summed over the tokens it predicts, in nats (torch's cross entropy) or in bits (-log2 p);
divided by the notes of what was scored (one Pitch token per note), it compares models whatever their
tokenizer or context length.
"""
from __future__ import annotations

import math

LN2 = math.log(2.0)


def nats_to_bits(nats):
    """A loss in nats (a float, or an array or tensor of them) in bits."""
    return nats / LN2


def bits_per_note(bits, notes):
    """Summed bits over the number of notes scored; with no note, over one (0 bits stays 0)."""
    return bits / max(notes, 1)

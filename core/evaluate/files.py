"""`rwkv-music eval`: bits per token and per note of a model (and optional style) on whole MIDI files.

Each file is read as `rwkv-music tokens` reads it and scored from its first token to its last in one
pass through the recurrent state (EVAL_CHUNK tokens per parallel forward, the state carried between
chunks), so nothing is cut into windows. The windowed scoring every baseline shares is in scoring.py.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..memory import MemoryMixer, PieceMemory
from .bits import bits_per_note, nats_to_bits
from .memory_bits import piece_bits
from .scoring import whole_piece_logits



def file_tokens(path, tokenizer) -> list[int]:
    """A MIDI file's token ids as `rwkv-music eval` reads it: the model's view (its meter, its grid)."""
    from core.midi import read_midi
    return tokenizer.encode(read_midi(str(path))[0].token_view())


class EvaluationError(Exception):
    """A failure to tell the user as one line (a missing file, a model or style that does not load)."""


def sequence_nll_bits(model, ids: list[int], wkv: torch.Tensor | None = None) -> float:
    """Total bits of predicting ids[i+1] from ids[:i+1], for every i, from the zero state (or the
    style's WKV state). `model`: a network or a core.network.style.StyledModel (see whole_piece_logits)."""
    return nats_to_bits(sum(float(F.cross_entropy(logits.float(), targets, reduction="sum").double())
                            for _, logits, targets in whole_piece_logits(model, ids, wkv)))


def evaluate_files(model_path: str, paths: list[str], style_path: str | None = None,
                   device: str = "auto", strength: float = 1.0, memory: float = 0.0) -> dict:
    """Bits per token and per note of a model (and optional style, at `strength`) on MIDI files or folders,
    each file tokenized as `rwkv-music tokens` does. Unreadable files are listed under "skipped".

    memory > 0: the model as generation uses it, the piece memory (and the style's folder memory) mixed in
    at that strength and the grammar masking every token (core.evaluate.memory_bits); "scored" says which."""
    from core.network.checkpoint import CheckpointError, load_checkpoint
    from core.training.data import find_midi_files
    from core.midi import MidiReadError
    from core.network.style import StyledModel, load_style
    from core.tokenizer import Tokenizer
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = None
    try:
        network, meta = load_checkpoint(model_path, device=device)
        model = StyledModel(network)  # the network and the style scored with it
        if style_path:
            style = load_style(style_path, model)
            model.apply(style, strength)
            folder = style.memory
    except FileNotFoundError as e:
        raise EvaluationError(f"no such file: {e.filename or model_path}") from None
    except (CheckpointError, ValueError) as e:  # ValueError: a strength below 0
        raise EvaluationError(str(e)) from None
    try:
        tokenizer = Tokenizer.from_dict(meta["tokenizer"]) if "tokenizer" in meta else Tokenizer()
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    pitch = tokenizer.ids_of_kind("pitch")  # every note has exactly one pitch token
    files, skipped = [], []
    for path in paths:
        if not os.path.exists(path):
            raise EvaluationError(f"no such file or folder: {path}")
        for f in find_midi_files(path):
            try:
                ids = file_tokens(f, tokenizer)
            except (MidiReadError, OSError) as e:
                skipped.append({"path": str(f), "reason": str(e).splitlines()[0] if str(e) else type(e).__name__})
                continue
            if memory > 0:
                bits = float(piece_bits(model, tokenizer, ids, MemoryMixer(PieceMemory(), folder, memory)).mixed.sum())
            else:
                bits = sequence_nll_bits(model, ids)  # from an applied style's initial state
            notes = sum(1 for t in ids if t in pitch)
            files.append({"path": str(f), "tokens": len(ids), "notes": notes, "nll_bits": bits,
                          "bits_per_token": bits / max(1, len(ids) - 1)})
    predicted = sum(max(0, f["tokens"] - 1) for f in files)
    bits = sum(f["nll_bits"] for f in files)
    notes = sum(f["notes"] for f in files)
    if memory > 0:
        scored = (f"network + piece memory{' + folder memory' if folder is not None else ''} at strength "
                  f"{memory:g}, grammar-masked")
    else:
        scored = "the bare network (no memory, no grammar mask)"
    return {"model": model_path, "style": style_path, "strength": strength if style_path else None,
            "memory": memory, "scored": scored,
            "files": files, "skipped": skipped,
            "bits_per_token": bits / predicted if predicted else None,
            "bits_per_note": bits_per_note(bits, notes) if notes else None}

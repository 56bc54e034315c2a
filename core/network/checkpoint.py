"""Checkpoint and state files: the RWKV-LM `.pth` layout of core/network/model.py's network plus our metadata.

A checkpoint is a dict of tensors: the model's `state_dict()` (the names the RWKV tools read) and one key
of ours, META_KEY, holding JSON (the format, the model config, the tokenizer, training facts) as a uint8
tensor. Loading never runs code from the file: torch.load(weights_only=True) refuses anything but
tensors and plain containers, and every failure to read is one CheckpointError. The configuration comes
from tensor shapes alone, so plain RWKV-LM x070 files load too. A state file (the older form of a style,
core/network/style.py) holds a learned initial WKV state tied to its base model by `model_fingerprint`.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re

import torch
import torch.nn as nn

from core.atomic import atomic_write
from core.network.model import RWKV7, UNUSED_PARAMETERS, ModelConfig

# The one key we add to the RWKV-LM layout: our metadata as UTF-8 JSON in a uint8 tensor.
# The `rwkv` package loads every key; this one has no "blocks." and no "*.weight" suffix it
# transposes, so it just sits unused in its weight dict.
META_KEY = "rwkv_music_meta"
FORMAT_NAME = "rwkv-music/x070"


class CheckpointError(ValueError):
    """A checkpoint or state file that cannot be used (unsafe, truncated, or not x070)."""


def json_tensor(obj: dict) -> torch.Tensor:
    """A JSON-serialisable dict as the uint8 tensor stored under META_KEY."""
    return torch.frombuffer(bytearray(json.dumps(obj).encode("utf-8")), dtype=torch.uint8).clone()


def tensor_json(t: torch.Tensor) -> dict:
    """The dict that `json_tensor` stored."""
    return json.loads(bytes(t.to(torch.uint8).tolist()).decode("utf-8"))


def _atomic_torch_save(obj, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        torch.save(obj, f)


def safe_load(path: str, device) -> dict:
    """torch.load with weights_only=True; a file holding anything but tensors and plain
    containers is refused as a CheckpointError."""
    try:
        obj = torch.load(os.fspath(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused, it holds more than tensors ({str(e).splitlines()[0]})") from None
    except FileNotFoundError:
        raise
    except Exception as e:  # RuntimeError, EOFError, OSError, struct.error...: whatever a damaged file raises
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint ({why})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(obj).__name__}, not a dict of tensors)")
    return obj


def config_from_state_dict(sd: dict) -> ModelConfig:
    """Read the configuration from tensor shapes alone (never from key order)."""
    try:
        vocab, n_embd = sd["emb.weight"].shape
        n_head, head_size = sd["blocks.0.att.r_k"].shape
        layers = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
        n_layer = max(layers) + 1
        if layers != set(range(n_layer)):
            raise CheckpointError(f"layers missing from the checkpoint: {sorted(set(range(n_layer)) - layers)}")
        last = f"blocks.{n_layer - 1}.att."  # layer 0's v-LoRA is unused; read sizes past it
        return ModelConfig(n_layer=n_layer, n_embd=n_embd, vocab_size=vocab, head_size=head_size,
                           dim_w=sd[last + "w1"].shape[1], dim_a=sd[last + "a1"].shape[1],
                           dim_v=sd[last + "v1"].shape[1], dim_g=sd[last + "g1"].shape[1],
                           deep_embed="blocks.0.ffn.s_emb.weight" in sd)
    except KeyError as e:
        raise CheckpointError(f"not an RWKV-7 x070 checkpoint: missing {e.args[0]}") from None


def save_checkpoint(model: RWKV7, path: str, meta: dict | None = None, dtype: torch.dtype | None = None) -> None:
    """Write the RWKV-LM `.pth` layout plus our metadata (JSON in a uint8 tensor under
    META_KEY, next to the model config). The `rwkv` package loads the file unchanged.
    `meta` must be JSON-serialisable (e.g. {"tokenizer": Tokenizer().to_dict(), "training": ...})."""
    sd = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).contiguous().cpu()
          for k, v in model.state_dict().items()}
    full_meta = {"format": FORMAT_NAME, "config": model.config.to_dict(), **(meta or {})}
    sd[META_KEY] = json_tensor(full_meta)
    _atomic_torch_save(sd, path)


def load_checkpoint(path: str, device="cpu", dtype: torch.dtype = torch.float32) -> tuple[RWKV7, dict]:
    """Load a checkpoint (ours or a plain RWKV-LM x070 file) -> (model in eval mode, meta).
    The config comes from tensor shapes; meta is {} for files without our metadata."""
    sd = safe_load(path, "cpu")
    meta = tensor_json(sd.pop(META_KEY)) if META_KEY in sd else {}
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: not a checkpoint (non-tensor entries)")
    cfg = config_from_state_dict(sd)
    with torch.device("meta"):  # shapes only: the file's tensors become the parameters
        model = RWKV7(cfg, init=False)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if set(missing) - UNUSED_PARAMETERS or unexpected:
        raise CheckpointError(f"{path}: layout mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key in missing:  # layer 0's unused value-residual weights, dropped by some exporters
        module_name, name = key.rsplit(".", 1)
        old = model.get_parameter(key)
        setattr(model.get_submodule(module_name), name, nn.Parameter(torch.zeros(old.shape)))
    return model.to(device=device, dtype=dtype).eval(), meta


def read_checkpoint_meta(path: str) -> dict:
    """Our metadata of a checkpoint ({} for a plain RWKV-LM file), without building the model."""
    sd = safe_load(path, "cpu")
    return tensor_json(sd[META_KEY]) if META_KEY in sd else {}


def model_fingerprint(model) -> str:
    """A short hash of the config and every weight: the identity a style file is tied to. `model`: a network
    (RWKV7), or a model with a style applied (core.network.style.StyledModel), which gives its base model's weights
    (`base_weights()`), so the fingerprint is its base model's."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    weights = model.state_dict() if isinstance(model, nn.Module) else model.base_weights()
    for name, p in sorted(weights.items()):
        h.update(name.encode())
        h.update(p.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def save_state_file(path: str, wkv: torch.Tensor, model: RWKV7, meta: dict | None = None) -> None:
    """Write a style: the learned initial WKV state [L,H,N,N] of `model` plus meta, including
    the base model's identity (config and fingerprint)."""
    cfg = model.config
    if tuple(wkv.shape) != (cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size):
        raise ValueError(f"WKV state shape {tuple(wkv.shape)} does not fit the model")
    full_meta = {"format": FORMAT_NAME + "/state", "base_config": cfg.to_dict(),
                 "base_fingerprint": model_fingerprint(model), **(meta or {})}
    _atomic_torch_save({"wkv": wkv.detach().to(torch.float32).contiguous().cpu(), META_KEY: json_tensor(full_meta)},
                       path)


def load_state_file(path: str, model: RWKV7 | None = None) -> tuple[torch.Tensor, dict]:
    """Read a style -> (wkv [L,H,N,N] float32, meta). With `model`, refuse a style learned on
    another base model (different shapes or weights)."""
    obj = safe_load(path, "cpu")
    if "wkv" not in obj or META_KEY not in obj:
        raise CheckpointError(f"{path}: not a style file")
    wkv, meta = obj["wkv"].to(torch.float32), tensor_json(obj[META_KEY])
    if model is not None:
        cfg = model.config
        if tuple(wkv.shape) != (cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size):
            raise CheckpointError(f"{path}: the style's shape {tuple(wkv.shape)} does not fit this model")
        if meta.get("base_fingerprint") not in (None, model_fingerprint(model)):
            raise CheckpointError(f"{path}: the style was learned on another base model")
    return wkv, meta

"""Styles: a small file, learnt on top of one base model, that steers every token it generates.

A style holds any of four parts (all optional, all relative to the base model, so strength 0 is the base):
- "lora":   low-rank adapters B @ A on the large matrices (core/training/lora.py targets) and on the low-rank
            projections that set each token's decay, in-context rate, value mix and gate
            (core.training.style_tuning.STYLE_TARGETS), kept apart from the base and merged into the loaded model's
            weights only while the style is applied (fp16 in the file);
- "offset": a state offset dS per layer and head, read with the WKV state at every token:
            o_t = r_t (S_t + dS) (after Kang et al., "State-offset tuning", ACL 2025); full or low rank;
- "bias":   changes to the small always-applied parameters: LayerNorm gains and biases, the decay and
            in-context-rate biases w0 and a0, the token-shift mixes;
- "state":  a learned initial WKV state (the older "state tuning"): it shapes the opening of a piece,
            and the recurrence forgets it within a few hundred tokens.
A style may also carry the folder's memory (core.memory.FolderMemory): the token ids of the pieces it was
made from (int16), rebuilt into an index when first used, and mixed into every token at sampling time.
It is not part of the model's weights, so strength does not scale it (the sampling's `memory` does), and
MAX_STYLE_BYTES bounds the adapters alone; the memory has its own bound (MAX_MEMORY_TOKENS).

`StyledModel(model)` owns a loaded model's style: `apply(style, strength)` changes the weights in place and
keeps the state offset and the initial state, which it passes to the network as values; `remove()` restores
the base bit for bit, so switching styles never reloads the base model. Strength s scales every part
linearly: W + s * dW, s * dS, s * S0.

A style file records the base model's fingerprint (a hash of its config and weights) and is refused on
another base. Files are read with map_location="cpu" (a style learnt on a GPU loads anywhere). The older
state-only files ("rwkv-music/x070/state") load as a style with a "state" part.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from core.network import model as M
from core.memory import FolderMemory
from core.atomic import atomic_write
from core.network.checkpoint import (FORMAT_NAME, META_KEY, CheckpointError, json_tensor, model_fingerprint, safe_load,
                             tensor_json)
from core.network.step import Stepper, prepare, step_tokens

STYLE_FORMAT = FORMAT_NAME + "/style"
LEGACY_STATE_FORMAT = FORMAT_NAME + "/state"
MAX_STYLE_BYTES = 1_000_000  # a style's adapters are at most 1 MB (decimal: the stricter reading)
MAX_MEMORY_TOKENS = 2_000_000  # a folder memory of at most 4 MB (about 700 pop songs)
PARTS = ("lora", "offset", "bias", "state")

class StyleError(CheckpointError):
    """A style that cannot be used here: not a style file, another base model, too large."""


def parse_parts(text: str | list | tuple) -> tuple[str, ...]:
    """"lora+offset", "lora,state" or a list -> the parts in canonical order; unknown names refused."""
    names = [p.strip() for p in (re.split(r"[+,\s]+", text) if isinstance(text, str) else text) if p.strip()]
    unknown = sorted(set(names) - set(PARTS))
    if unknown or not names:
        raise ValueError(f"unknown style part(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in names)


@dataclass
class Style:
    state: torch.Tensor | None = None       # [L,H,N,N] initial WKV state
    offset: torch.Tensor | None = None      # [L,H,N,N] full state offset, or
    offset_u: torch.Tensor | None = None    # [L,H,N,R] and
    offset_v: torch.Tensor | None = None    # [L,H,R,N]: dS = U @ V per head
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)                   # parameter -> change
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # weight -> (A, B)
    meta: dict = field(default_factory=dict)
    memory_pieces: list[np.ndarray] = field(default_factory=list)  # the folder's token ids, one array a piece
    _memory: FolderMemory | None = field(default=None, repr=False, compare=False)

    @property
    def parts(self) -> tuple[str, ...]:
        """The trained parts it holds (PARTS order); the memory is not one of them (see `has_memory`)."""
        have = {"lora": bool(self.lora), "offset": self.offset is not None or self.offset_u is not None,
                "bias": bool(self.deltas), "state": self.state is not None}
        return tuple(p for p in PARTS if have[p])

    @property
    def has_memory(self) -> bool:
        return bool(self.memory_pieces)

    @property
    def memory(self) -> FolderMemory | None:
        """The folder memory (built on first use, then kept), or None."""
        if self._memory is None and self.memory_pieces:
            self._memory = FolderMemory(self.memory_pieces)
        return self._memory

    def offset_matrix(self) -> torch.Tensor | None:
        if self.offset is not None:
            return self.offset.float()
        if self.offset_u is not None:
            return self.offset_u.float() @ self.offset_v.float()
        return None

    def weight_deltas(self):
        """(parameter name, change) for every parameter the style changes (LoRA as B @ A)."""
        yield from self.deltas.items()
        for name, (a, b) in self.lora.items():
            yield name, b.float() @ a.float()

    @property
    def base_fingerprint(self) -> str | None:
        return self.meta.get("base_fingerprint")

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or "style")


# --- files -------------------------------------------------------------------------------------------
def _tensors(style: Style, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The file's tensors: LoRA always fp16, the other big parts in `dtype`, parameter changes fp32."""
    out: dict[str, torch.Tensor] = {}

    def put(key, t, dt):
        out[key] = t.detach().to("cpu", dt).contiguous()

    if style.state is not None:
        put("wkv", style.state, dtype)  # the key the older state files use
    if style.offset is not None:
        put("offset", style.offset, dtype)
    if style.offset_u is not None:
        put("offset_u", style.offset_u, dtype)
        put("offset_v", style.offset_v, dtype)
    for name, d in style.deltas.items():
        put(f"delta:{name}", d, torch.float32)
    for name, (a, b) in style.lora.items():
        put(f"lora:{name}:A", a, torch.float16)
        put(f"lora:{name}:B", b, torch.float16)
    return out


def _memory_tensors(style: Style) -> dict[str, torch.Tensor]:
    if not style.memory_pieces:
        return {}
    tokens = np.concatenate(style.memory_pieces).astype(np.int16)
    lengths = np.array([len(p) for p in style.memory_pieces], dtype=np.int64)
    return {"memory:tokens": torch.from_numpy(tokens), "memory:lengths": torch.from_numpy(lengths)}


def _serialise(style: Style, meta: dict, dtype: torch.dtype, with_memory: bool = True) -> bytes:
    obj = _tensors(style, dtype)
    if with_memory:
        obj.update(_memory_tensors(style))
    obj[META_KEY] = json_tensor(meta)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def style_bytes(style: Style, meta: dict | None = None, max_bytes: int = MAX_STYLE_BYTES) -> tuple[bytes, str]:
    """The file's bytes and the storage dtype: float32 where the file then fits `max_bytes`, else float16."""
    meta = {"format": STYLE_FORMAT, **(meta or {})}
    if len(_serialise(style, {**meta, "dtype": "float32"}, torch.float32, with_memory=False)) <= max_bytes:
        return _serialise(style, {**meta, "dtype": "float32"}, torch.float32), "float32"
    return _serialise(style, {**meta, "dtype": "float16"}, torch.float16), "float16"


def adapter_bytes(style: Style, meta: dict | None = None, max_bytes: int = MAX_STYLE_BYTES) -> int:
    """The size of the file without its memory: what MAX_STYLE_BYTES bounds."""
    meta = {"format": STYLE_FORMAT, **(meta or {})}
    dtype = torch.float32
    if len(_serialise(style, {**meta, "dtype": "float32"}, dtype, with_memory=False)) > max_bytes:
        dtype = torch.float16
    return len(_serialise(style, {**meta, "dtype": str(dtype)[6:]}, dtype, with_memory=False))


def save_style(path: str, style: Style, base: M.RWKV7 | StyledModel | None = None, meta: dict | None = None, *,
               base_fingerprint: str | None = None, max_bytes: int = MAX_STYLE_BYTES) -> int:
    """Write `style` (atomically) for its base model; returns the file size. The base's identity comes from
    `base` (a loaded network, or a StyledModel with or without a style applied) or `base_fingerprint` +
    style.meta's config. A style over `max_bytes` even in float16 is refused (StyleError), nothing written."""
    full = {**style.meta, **(meta or {}), "parts": list(style.parts)}
    if style.has_memory:
        full["memory"] = {"pieces": len(style.memory_pieces), "tokens": int(sum(map(len, style.memory_pieces)))}
        if full["memory"]["tokens"] > MAX_MEMORY_TOKENS:
            raise StyleError(f"the folder memory holds {full['memory']['tokens']:,} tokens, over the "
                             f"{MAX_MEMORY_TOKENS:,} limit: use a smaller folder")
    if base is not None:
        full["base_config"] = base.config.to_dict()
        full["base_fingerprint"] = model_fingerprint(base)
    if base_fingerprint is not None:
        full["base_fingerprint"] = base_fingerprint
    if "base_fingerprint" not in full:
        raise ValueError("a style needs its base model's fingerprint")
    data, _ = style_bytes(style, full, max_bytes)
    adapters = adapter_bytes(style, full, max_bytes)
    if adapters > max_bytes:
        raise StyleError(f"the style would take {adapters / 1e6:.2f} MB, over the {max_bytes / 1e6:.2f} MB "
                         "limit: use a lower rank or fewer parts")
    import os
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with atomic_write(path) as f:
        f.write(data)
    return len(data)


def load_style(path: str, model: M.RWKV7 | StyledModel | None = None) -> Style:
    """Read a style file (CPU tensors, float32). With `model` (a network or a StyledModel), refuse one learnt
    on another base model."""
    obj = safe_load(path, "cpu")
    if META_KEY not in obj:
        raise StyleError(f"{path}: not a style file")
    meta = tensor_json(obj.pop(META_KEY))
    fmt = meta.get("format")
    if fmt == FORMAT_NAME:
        raise StyleError(f"{path}: a model checkpoint, not a style file (use it as the model)")
    if fmt not in (STYLE_FORMAT, LEGACY_STATE_FORMAT):
        raise StyleError(f"{path}: not a style file (format {fmt!r})")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise StyleError(f"{path}: not a style file (non-tensor entries)")
    style = Style(meta=meta)
    try:
        if "memory:tokens" in obj:
            tokens = obj.pop("memory:tokens").numpy().astype(np.int64)
            lengths = obj.pop("memory:lengths").numpy()
            if lengths.sum() != len(tokens) or (lengths < 0).any():
                raise StyleError(f"{path}: a damaged style file (its memory's lengths do not add up)")
            style.memory_pieces = np.split(tokens, np.cumsum(lengths)[:-1]) if len(lengths) else []
        for key, t in obj.items():
            t = t.float()
            if key == "wkv":
                style.state = t
            elif key in ("offset", "offset_u", "offset_v"):
                setattr(style, key, t)
            elif key.startswith("delta:"):
                style.deltas[key[len("delta:"):]] = t
            elif key.startswith("lora:") and key.endswith(":A"):
                name = key[len("lora:"):-len(":A")]
                style.lora[name] = (t, obj[f"lora:{name}:B"].float())
            elif not (key.startswith("lora:") and key.endswith(":B")):
                raise StyleError(f"{path}: unknown entry {key!r} in the style file")
    except KeyError as e:
        raise StyleError(f"{path}: a damaged style file (missing {e.args[0]})") from None
    if (style.offset_u is None) != (style.offset_v is None):
        raise StyleError(f"{path}: a damaged style file (half of a low-rank offset)")
    if not style.parts and not style.has_memory:
        raise StyleError(f"{path}: the style file holds nothing")
    if model is not None:
        check_style(style, model, path)
    return style


def check_style(style: Style, model: M.RWKV7 | StyledModel, where: str = "the style") -> None:
    """Refuse (StyleError) a style that was not learnt on this model, or whose shapes do not fit it. `model`: a
    network, or a StyledModel (checked against its base model, whatever style it has applied)."""
    cfg = model.config
    base_cfg = style.meta.get("base_config")
    base_name = (style.meta.get("training") or {}).get("base") or style.meta.get("base_name")
    learnt_on = f" ({base_name})" if base_name else ""
    if base_cfg is not None and M.ModelConfig.from_dict(base_cfg) != cfg:
        theirs, ours = M.ModelConfig.from_dict(base_cfg).to_dict(), cfg.to_dict()
        differ = ", ".join(f"{k} {theirs[k]} there, {ours[k]} here" for k in ours if theirs.get(k) != ours[k])
        raise StyleError(f"{where}: learnt on another base model{learnt_on}, of another shape ({differ}); "
                         f"pick the style's own base model")
    if style.base_fingerprint not in (None, model_fingerprint(model)):
        raise StyleError(f"{where}: learnt on another base model{learnt_on}; it only fits that model "
                         f"(fingerprint {style.base_fingerprint}, this model's {model_fingerprint(model)})")
    if style.memory_pieces and max(int(p.max(initial=0)) for p in style.memory_pieces) >= cfg.vocab_size:
        raise StyleError(f"{where}: its folder memory holds token ids outside this model's vocabulary")
    square = (cfg.n_layer, cfg.n_head, cfg.head_size, cfg.head_size)
    for name, t in (("state", style.state), ("offset", style.offset_matrix())):
        if t is not None and tuple(t.shape) != square:
            raise StyleError(f"{where}: its {name} has shape {tuple(t.shape)}, this model needs {square}")
    params = dict((model.model if isinstance(model, StyledModel) else model).named_parameters())
    for name, d in style.weight_deltas():
        if name not in params or params[name].shape != d.shape:
            raise StyleError(f"{where}: changes {name}, which this model does not have in that shape")


# --- applying a style to a loaded model ---------------------------------------------------------------
class StyledModel:
    """A loaded base model and the style applied to it: the one owner of everything a style changes.

    `apply(style, strength)` makes the network (`model`, an RWKV7) the base plus `strength` times the style:
    the weights the style changes are changed in place (their base values kept here, to restore them bit for
    bit), and the state offset dS and the initial WKV state are kept here, passed to the network as values
    (`forward`/`prefill`'s `offset=`, core.network.step's `offset=`, `init_state(wkv=)`). `remove()` restores the
    base; switching styles never reloads it. Run a styled model through this object (`__call__`, `prefill`,
    `init_state`, `step`); `model_fingerprint(styled)` is the base model's (`base_weights`).
    """

    def __init__(self, model: M.RWKV7, style: Style | None = None, strength: float = 1.0, *,
                 check: bool = True) -> None:
        self.model = model
        self._style: Style | None = None
        self._strength = 1.0
        self._backup: dict[str, torch.Tensor] = {}  # parameter -> its base value, for the ones changed
        self._offset: torch.Tensor | None = None    # [L,H,N,N] state offset dS, strength applied
        self._initial: torch.Tensor | None = None   # [L,H,N,N] initial WKV state, strength applied
        if style is not None:
            self.apply(style, strength, check=check)

    # -- what is applied
    @property
    def style(self) -> Style | None:
        return self._style

    @property
    def strength(self) -> float:
        """The strength last asked for (1.0 at first); it steers only while a style is applied."""
        return self._strength

    @property
    def applied(self) -> tuple[Style, float] | None:
        """(style, strength), or None for the base model."""
        return None if self._style is None else (self._style, self._strength)

    @property
    def offset(self) -> torch.Tensor | None:
        """The state offset dS [L,H,N,N] the network reads at every token (strength applied), or None.
        A new tensor whenever it changes (never changed in place)."""
        return self._offset

    @property
    def initial_state(self) -> torch.Tensor | None:
        """The initial WKV state [L,H,N,N] (strength applied), or None: the zero state."""
        return self._initial

    @property
    def config(self) -> M.ModelConfig:
        return self.model.config

    def base_weights(self) -> dict[str, torch.Tensor]:
        """The base model's weights by name (the network's own, with the base values of those the style
        changed): what core.network.checkpoint.model_fingerprint hashes."""
        return {**self.model.state_dict(), **self._backup}

    # -- applying
    @torch.no_grad()
    def apply(self, style: Style | None, strength: float = 1.0, *, check: bool = True) -> None:
        """Make the model the base model plus `strength` times `style` (None: the base). Changes the weights
        in place (the step repacks them by itself); the base weights are kept to restore them exactly. A
        style that does not fit the base (check_style) is refused before anything changes."""
        strength = float(strength)
        if not math.isfinite(strength) or strength < 0:
            raise ValueError(f"style strength must be a number >= 0, not {strength}")
        if style is not None and check:
            check_style(style, self)
        self.remove()
        self._style, self._strength = style, strength
        if style is None or strength == 0:
            return  # the base model, untouched: its logits exactly
        device = self.model.emb.weight.device
        backup: dict[str, torch.Tensor] = {}
        for name, delta in style.weight_deltas():
            p = self.model.get_parameter(name)
            backup[name] = p.detach().clone()
            p.add_((delta.to(device) * strength).to(p.dtype))  # in place: bumps the version, so the step repacks
        self._backup = backup
        offset = style.offset_matrix()
        if offset is not None:
            self._offset = (offset * strength).to(device)
        if style.state is not None:
            self._initial = (style.state.float() * strength).to(device)

    @torch.no_grad()
    def remove(self) -> None:
        """Back to the base model, bit for bit."""
        for name, base in self._backup.items():
            self.model.get_parameter(name).copy_(base)
        self._backup = {}
        self._style = None
        self._offset = None
        self._initial = None

    def set_strength(self, strength: float) -> None:
        """Re-apply the applied style at another strength (no file read, no base reload)."""
        if self._style is not None:
            self.apply(self._style, strength, check=False)

    # -- running the styled model
    def init_state(self, batch_size: int = 1, wkv: torch.Tensor | None = None) -> M.State:
        """The state before the first token: `wkv` [L,H,N,N] if given, else the style's initial state, in
        every stream (zeros without either): RWKV7.init_state with the style."""
        return self.model.init_state(batch_size, wkv=self._initial if wkv is None else wkv)

    def _start(self, idx: torch.Tensor, state: M.State | None) -> M.State | None:
        return self.init_state(idx.shape[0]) if state is None and self._initial is not None else state

    def __call__(self, idx: torch.Tensor, state: M.State | None = None, return_state: bool = False,
                 backend: str | None = None):
        """The network's parallel forward (RWKV7.forward) with the style: from `state`, or from the style's
        initial state when none is given."""
        return self.model(idx, self._start(idx, state), return_state, backend, offset=self._offset)

    def prefill(self, idx: torch.Tensor, state: M.State | None = None, full_output: bool = False):
        """RWKV7.prefill with the style (from its initial state when no state is given)."""
        return self.model.prefill(idx, self._start(idx, state), full_output, offset=self._offset)

    def prepare_step(self, backend: str = "step-cpp") -> Stepper:
        """The one-token stepper (core.network.step.prepare) for the styled weights, made now if it must be."""
        return prepare(self.model, backend, self._offset)

    def step(self, tokens: torch.Tensor, state: M.State, backend: str = "step-cpp") -> tuple[torch.Tensor, M.State]:
        """One token for each of B streams with the style (core.network.step.step_tokens): tokens [B] -> (logits, State)."""
        return step_tokens(self.model, tokens, state, backend, offset=self._offset)

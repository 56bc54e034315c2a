"""Where the app keeps things, and the preferences remembered between runs (QSettings)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings

from core.paths import resources_dir, user_data_dir

ORGANIZATION = "RWKV-Music"
APPLICATION = "RWKV-Music"


@dataclass(frozen=True)
class AppPaths:
    resources: Path   # the bundled base model and demo files
    user_data: Path   # fine-tuned models, style files, training runs

    @classmethod
    def default(cls) -> "AppPaths":
        return cls(resources_dir(), user_data_dir())


class Preferences:
    """Typed access to the few settings the app remembers."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qs = settings or QSettings(ORGANIZATION, APPLICATION)

    def get(self, key: str, default=None, kind=str):
        value = self.qs.value(key, default)
        if value is None:
            return default
        try:
            if kind is bool:
                return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            return kind(value)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value) -> None:
        self.qs.setValue(key, value)
        self.qs.sync()

    @property
    def midi_api(self) -> str | None:
        """The MIDI system the user chose (a core.live.MIDI_APIS key), or None: the default."""
        return self.get("midi/api", "") or None

    @midi_api.setter
    def midi_api(self, value: str | None) -> None:
        self.set("midi/api", value or "")

"""MIDI ports through mido's rtmidi backend: which MIDI systems (ALSA, JACK, CoreMIDI, WinMM) exist here,
listing ports without ever raising, and opening an output (a virtual port named after the app where the
platform has them) or an input that calls back on rtmidi's thread. Errors are PortError, with the reason."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable

import mido

APP_PORT_NAME = "RWKV-Music"
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"


class PortError(RuntimeError):
    """A MIDI port could not be listed or opened; the message says why."""


# the MIDI systems rtmidi can talk to: our short name -> (rtmidi API name, what the user reads)
MIDI_APIS = {
    "alsa": ("LINUX_ALSA", "ALSA"),
    "jack": ("UNIX_JACK", "JACK"),
    "coremidi": ("MACOSX_CORE", "CoreMIDI"),
    "winmm": ("WINDOWS_MM", "Windows MIDI (WinMM)"),
}
_RTMIDI = "mido.backends.rtmidi"
_OWN_PORT = re.compile(rf"^{re.escape(APP_PORT_NAME)}(-\d+)?(:|$)")  # JACK renames a second client X-01


def midi_apis() -> list[str]:
    """The MIDI systems this machine's rtmidi has compiled in, by short name, in rtmidi's order (the
    platform's own system first: CoreMIDI, ALSA, then JACK, WinMM); [] without rtmidi."""
    try:
        compiled = mido.Backend(_RTMIDI, load=True).module.get_api_names()
    except (ImportError, OSError, AttributeError):
        return []
    by_api = {api: key for key, (api, _) in MIDI_APIS.items()}
    return [by_api[api] for api in compiled if api in by_api]


def midi_api_label(key: str) -> str:
    return MIDI_APIS[key][1] if key in MIDI_APIS else key


def default_midi_api() -> str | None:
    """The system used when none is chosen: the one MIDO_BACKEND names, else rtmidi's first (ALSA on Linux)."""
    env = os.environ.get("MIDO_BACKEND", "")
    if env:
        module, _, api = env.partition("/")
        return next((k for k, (a, _) in MIDI_APIS.items() if module == _RTMIDI and a == api), None)
    apis = midi_apis()
    return apis[0] if apis else None


def midi_backend(name: str | None = None) -> mido.Backend:
    """The mido backend to use: a MIDI system by short name ("alsa", "jack", "coremidi", "winmm"), a full
    mido backend string, or None for MIDO_BACKEND / the default. Raises PortError for a system this
    machine does not have (rtmidi would otherwise fail later with a less helpful message)."""
    if name in MIDI_APIS:
        if name not in midi_apis():
            have = ", ".join(midi_apis()) or "none"
            raise PortError(f"the MIDI system {midi_api_label(name)} is not available here (available: {have})")
        name = f"{_RTMIDI}/{MIDI_APIS[name][0]}"
    return mido.Backend(name or os.environ.get("MIDO_BACKEND") or _RTMIDI, load=True)


def _api_of(backend: mido.Backend) -> str | None:
    api = getattr(backend, "api", None)
    return next((k for k, (a, _) in MIDI_APIS.items() if a == api), None) if api else default_midi_api()


def is_own_port(name: str) -> bool:
    """A port of this app's own MIDI client: offering it back to the app would make a feedback loop."""
    return bool(_OWN_PORT.match(name))


@dataclass
class PortListing:
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    reason: str = ""  # why a list is empty where the MIDI system could not be reached


def list_ports(backend: mido.Backend | str | None = None) -> PortListing:
    """Inputs and outputs, without the app's own ports; never raises (rtmidi raises SystemError where no
    MIDI system exists, e.g. JACK with no server running)."""
    listing, reasons = PortListing(), []
    try:
        be = backend if isinstance(backend, mido.Backend) else midi_backend(backend)
    except PortError as e:
        return PortListing(reason=str(e))
    except (ImportError, OSError, ValueError) as e:
        return PortListing(reason=f"no MIDI backend: {e}")
    for attr, getter in (("inputs", be.get_input_names), ("outputs", be.get_output_names)):
        try:
            setattr(listing, attr, [n for n in getter() if not is_own_port(n)])
        except (OSError, RuntimeError, ValueError) as e:  # rtmidi.SystemError is an OSError
            reasons.append(str(e))
    listing.reason = "; ".join(dict.fromkeys(reasons))
    return listing


def supports_virtual_ports(api: str | None = None) -> bool:
    """WinMM has none (use loopMIDI or a hardware port); ALSA, JACK and CoreMIDI do."""
    if api is None:
        api = default_midi_api()
    return api != "winmm" if api is not None else not sys.platform.startswith("win")


def open_output(name: str | None = None, *, virtual: bool | None = None,
                backend: mido.Backend | str | None = None):
    """An output port: `name` if given; else a virtual port named after the app where the platform has
    them; else the first existing output. Raises PortError with the reason."""
    be = backend if isinstance(backend, mido.Backend) else midi_backend(backend)
    try:
        if name is not None and not virtual:
            return be.open_output(name)
        if virtual is not False and supports_virtual_ports(_api_of(be)):
            try:
                return be.open_output(name or APP_PORT_NAME, client_name=APP_PORT_NAME)
            except OSError:
                if virtual:
                    raise
        outputs = be.get_output_names()
        if not outputs:
            raise PortError("no MIDI output available")
        return be.open_output(outputs[0])
    except PortError:
        raise
    except (OSError, RuntimeError) as e:
        raise PortError(f"cannot open MIDI output {name or APP_PORT_NAME!r}: {e}") from e


def open_input(name: str | None, callback: Callable[[mido.Message], None], *, virtual: bool = False,
               backend: mido.Backend | str | None = None):
    """An input port delivering each message to `callback` on rtmidi's thread (None: first input)."""
    be = backend if isinstance(backend, mido.Backend) else midi_backend(backend)
    try:
        if virtual:
            return be.open_input(name or "in", client_name=APP_PORT_NAME, callback=callback)
        if name is None:
            inputs = be.get_input_names()
            if not inputs:
                raise PortError("no MIDI input available")
            name = inputs[0]
        return be.open_input(name, callback=callback)
    except PortError:
        raise
    except (OSError, RuntimeError) as e:
        raise PortError(f"cannot open MIDI input {name!r}: {e}") from e

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
            reasons.append(plain_reason(_api_of(be), str(e)))
    listing.reason = "; ".join(dict.fromkeys(reasons))
    return listing


# what to do, in plain words, when a MIDI system cannot be reached (rtmidi's own text names C++ classes)
_UNREACHABLE = {
    "jack": "No JACK server is running. Start one (QjackCtl, or `jackd -d alsa`), then press Refresh ports; "
            "or choose ALSA.",
    "alsa": "The ALSA sequencer is not available (no /dev/snd/seq). Load it (`sudo modprobe snd-seq`), or "
            "start a JACK server and choose JACK, then press Refresh ports.",
}
_UNREACHABLE_SIGNS = {"jack": ("JACK server not running", "jack server is not running"),
                      "alsa": ("ALSA sequencer", "/dev/snd/seq")}
NO_MIDI_SYSTEM = ("No MIDI system is running here, so playback is silent. On Linux start a JACK server "
                  "(QjackCtl) or load the ALSA sequencer (`sudo modprobe snd-seq`), then press Refresh ports.")


def plain_reason(api: str | None, error: str) -> str:
    """rtmidi's error for a MIDI system that cannot be reached, said as what the user can do."""
    for key, signs in _UNREACHABLE_SIGNS.items():
        if (api in (None, key)) and any(s.lower() in error.lower() for s in signs):
            return _UNREACHABLE[key]
    return error


def probe_midi_api(api: str) -> str:
    """'' when the MIDI system `api` answers (a JACK server runs, the ALSA sequencer opens), else why not,
    in plain words. Cheap (one client opened and closed, ~0.1 s), and never starts a JACK server."""
    return list_ports(api).reason


# on Linux a running JACK server comes first: a DAW on JACK sees the app's port only there
_PREFERENCE = ("jack", "coremidi", "alsa", "winmm")


def choose_midi_api(remembered: str | None = None) -> tuple[str | None, str]:
    """The MIDI system to open at start-up, and '' or what to do in plain words: the remembered choice
    when it works, else the first that works (JACK when its server runs, then the platform's own), else
    the platform's first with the advice NO_MIDI_SYSTEM."""
    apis = midi_apis()
    if not apis:
        return None, "No MIDI support (python-rtmidi) is installed: playback is silent."
    env = default_midi_api() if os.environ.get("MIDO_BACKEND") else None
    candidates = [a for a in (remembered, env) if a in apis]
    candidates += [a for a in _PREFERENCE if a in apis and a not in candidates]
    for api in candidates:
        if not probe_midi_api(api):
            return api, ""
    return (candidates[0] if remembered in apis else apis[0]), NO_MIDI_SYSTEM


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
        said = plain_reason(_api_of(be), str(e))
        raise PortError(said if said != str(e) else f"cannot open MIDI output {name or APP_PORT_NAME!r}: {e}") from e


def close_port(port) -> None:
    """Close a MIDI port (or the synth's handle) that may have vanished already (a device unplugged, a JACK
    server gone): then it is closed as far as it can be, and nothing is lost."""
    if port is None:
        return
    try:
        port.close()
    except Exception:
        pass


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
        said = plain_reason(_api_of(be), str(e))
        raise PortError(said if said != str(e) else f"cannot open MIDI input {name!r}: {e}") from e

"""The Jam toggle: listen on the MIDI input and answer the player when they pause (core.live does the
listening and timing; answers appear in the roll as a continuation)."""
from __future__ import annotations

from core import live


def toggle(window, on: bool) -> None:
    session = getattr(window, "_jam_session", None)
    if not on:
        if session is not None:
            session.stop()
            window._jam_session = None
        return
    if session is not None:
        return
    if not hasattr(live, "JamSession"):
        window.show_message("Jam mode is not available in this build of core.live.", "warning")
        window.midi_panel.jam.setChecked(False)
        return
    window.show_message("Jam mode is not wired yet.", "warning")
    window.midi_panel.jam.setChecked(False)

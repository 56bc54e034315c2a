"""Checks on recorded MIDI, shared by the live-playback tests."""
from __future__ import annotations

from collections import Counter


def sounding(messages) -> dict[tuple[int, int], int]:
    """{(channel, key): note-ons still without their note-off} at the end of `messages` ((time, mido.Message)
    pairs); empty when nothing hangs. Each note-on needs its own note-off: a key struck twice and released
    once still sounds, as a synth keeps a voice per strike. A note-off with nothing sounding is ignored."""
    held: Counter = Counter()
    for _, m in messages:
        if m.type not in ("note_on", "note_off"):
            continue
        key = (m.channel, m.note)
        if m.type == "note_on" and m.velocity > 0:
            held[key] += 1
        elif held[key]:
            held[key] -= 1
    return {key: count for key, count in held.items() if count}

"""Checks on recorded MIDI, shared by the live-playback tests."""
from __future__ import annotations

from collections import Counter


def sounding(messages) -> dict[tuple[int, int], int]:
    """{(channel, key): note-ons still without their note-off} at the end of `messages` ((time, mido.Message)
    pairs); empty when nothing hangs. Each note-on needs its own note-off: a key struck twice and released
    once still sounds, as a synth keeps a voice per strike. A note-off with nothing sounding is ignored."""
    return _held(messages, channel_resets=False)


def sounding_at_a_synth(messages) -> dict[tuple[int, int], int]:
    """As `sounding`, but as a synth or DAW hears the stream: All Notes Off (CC123) and All Sound Off (CC120)
    also end every key of their channel. A stop sends a note-off per sounding note and then CC123 on every
    channel it used (core.live.Scheduler); on a loaded machine the JACK loopback's recorder, a Python client,
    can miss cycles and read a stale buffer (seen: one note-off four times, the next ones lost), so the
    tests through it judge what a receiver would still be sounding. The note-offs themselves are checked
    where nothing lies between the scheduler and the check (tests/test_live.py)."""
    return _held(messages, channel_resets=True)


def _held(messages, channel_resets: bool) -> dict[tuple[int, int], int]:
    held: Counter = Counter()
    for _, m in messages:
        if channel_resets and m.type == "control_change" and m.control in (120, 123):
            for key in [k for k in held if k[0] == m.channel]:
                del held[key]
        elif m.type == "note_on" and m.velocity > 0:
            held[(m.channel, m.note)] += 1
        elif m.type in ("note_on", "note_off") and held[(m.channel, m.note)]:
            held[(m.channel, m.note)] -= 1
    return {key: count for key, count in held.items() if count}

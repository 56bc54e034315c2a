"""Small helpers shared by the GUI tests: real MIDI files written with core.midi."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

from core.midi import write_midi
from core.score import Note, Score, TempoChange, TimeSignature


def demo_score(bars: int = 8, seed: int = 1, bpm: float = 100.0) -> Score:
    """A melody in eighths over a bass in whole notes, in 4/4."""
    rng = random.Random(seed)
    notes = []
    for bar in range(bars):
        for k in range(8):
            notes.append(Note(bar * 1920 + k * 240, 220, 60 + rng.choice([0, 2, 4, 5, 7, 9, 11, 12]),
                              rng.randint(50, 110)))
        notes.append(Note(bar * 1920, 1800, 48 + rng.choice([0, 5, 7]), 70, program=32))
    return Score(notes, [TempoChange(0, bpm)], [TimeSignature(0, 4, 4)])


def write_demo(path, **kw) -> Score:
    score = demo_score(**kw)
    write_midi(score, path)
    return score


def arrived(rx, predicate, timeout: float, what: str) -> list:
    """The recorded messages once `predicate` holds; fails the test when it still does not at the timeout
    (MidiRecorder.wait_for then returns what it has)."""
    messages = rx.wait_for(predicate, timeout=timeout)
    assert predicate(messages), f"{what}: not heard within {timeout:g} s ({len(messages)} messages recorded)"
    return messages


def output_settled(qtbot, w, timeout: int = 60_000):
    """Wait until the window's output is no longer starting (the built-in synth starts in the background:
    its process answers after ~0.6 s); returns the window."""
    qtbot.waitUntil(lambda: not w.transport.starting, timeout=timeout)
    return w


def onsets(notes) -> list[list[int]]:
    """The pitches of each onset of `notes`, in time order (each onset's sorted)."""
    return [sorted(n.pitch for n in notes if n.start == t) for t in sorted({n.start for n in notes})]


def onsets_heard(heard: list[int], expected: list[list[int]]) -> int:
    """How many onsets of `expected` the note-ons `heard` play, in order (one onset's notes in any order);
    fails the test on anything else, the last onset cut short by a stop excepted."""
    at = 0
    for count, pitches in enumerate(expected):
        if at == len(heard):
            return count
        got = heard[at:at + len(pitches)]
        if len(got) < len(pitches):  # stopped while sending this onset
            assert not Counter(got) - Counter(pitches), heard
            return count
        assert sorted(got) == pitches, heard
        at += len(pitches)
    assert at == len(heard), heard
    return len(expected)


class RecordingPort:
    """Stands in for a mido output: keeps (perf_counter, message) for each send."""
    name = "recording"

    def __init__(self):
        self.messages: list = []
        self.lock = threading.Lock()

    def send(self, msg):
        with self.lock:
            self.messages.append((time.perf_counter(), msg))

    def close(self):
        pass

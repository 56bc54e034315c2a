"""MIDI files <-> Score, with a report of what was dropped or changed and why: the names the rest of the
project imports. Reading is core.midi.reader (its docstring: the rules a file is read by), note pairing
core.midi.pairing (shared with what a player plays on a MIDI input), writing core.midi.writer.
"""
from __future__ import annotations

from .reader import (ALL_NOTES_OFF_CONTROLLERS, MAX_BEATS, MAX_BPM, MAX_FILE_BYTES, MAX_NOTES, MIN_NOTE_TICKS,
                          SMPTE_BPM, MidiReadError, ReadReport, decode_text, read_midi)
from .writer import score_to_bytes, score_to_midifile, write_midi

__all__ = [
    "ALL_NOTES_OFF_CONTROLLERS", "MAX_BEATS", "MAX_BPM", "MAX_FILE_BYTES", "MAX_NOTES", "MIN_NOTE_TICKS",
    "SMPTE_BPM", "MidiReadError", "ReadReport", "decode_text", "read_midi", "score_to_bytes", "score_to_midifile",
    "write_midi",
]

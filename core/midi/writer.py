"""Score -> MIDI file: a type 1 Standard MIDI File that gives back the Score when core.midi reads it.

Every track keeps its name, channel, program, events (as their bytes) and notes; the tempo map and the
declared meter go in a conductor track. What a first-in-first-out reader could not pair back the same way
(notes of one key inside one another, or struck at one tick) goes on extra tracks on the same channel, and
tracks without a channel get one by core.channels' rule. Reading is core.midi.reader; both are imported
from core.midi.
"""
from __future__ import annotations

import io
import os
import struct
from collections import defaultdict

import mido

from ..atomic import atomic_write
from ..channels import track_channels
from .reader import decode_text  # a name event is kept as it is when it still reads as the track's name
from ..score import TICKS_PER_BEAT, TRACK_NAME, Event, Note, Score, Track

# Order within a tick: note-offs, other events (in their order), zero-length notes written as on then off
# (see _layers), note-ons.
_NOTE_OFF, _EVENT, _INSTANT_ON, _INSTANT_OFF, _NOTE_ON = range(5)


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Write a type 1 file atomically (a temporary file beside it, then a rename)."""
    data = score_to_bytes(score)
    with atomic_write(path) as fh:
        fh.write(data)


def score_to_midifile(score: Score) -> mido.MidiFile:
    """What write_midi writes, read back by mido (for tests and tools that inspect messages)."""
    return mido.MidiFile(file=io.BytesIO(score_to_bytes(score)))


def score_to_bytes(score: Score) -> bytes:
    """A type 1 Standard MIDI File at TICKS_PER_BEAT: the tempo map and meter in the first track when it
    holds no notes (a file's conductor), else in a new "Conductor" track before the others; then every track
    with its name, events and notes as they are.

    Tracks without a channel (made from notes, or new for notes the model wrote) get one: drums channel 10,
    pitched ones a channel no other track uses; with more than 15 pitched instruments, channels are shared
    and program changes switch them. A track whose notes of one pitch overlap in a way a reader's
    first-in-first-out pairing cannot give back (one inside another, or struck at the same tick) has those
    notes on extra tracks ("name 2"...) on its channel."""
    tracks = score.tracks(include_empty=True)
    conductor = [(t.tick, _EVENT, _meta(0x51, min(max(round(60e6 / t.bpm), 1), 0xFFFFFF).to_bytes(3, "big")))
                 for t in score.tempos]
    conductor += [(ts.tick, _EVENT, _meta(0x58, bytes((ts.numerator, ts.denominator.bit_length() - 1, 24, 8))))
                  for ts in score.time_signatures if ts.declared]  # a file without a meter stays without
    chunks = []
    if not tracks or tracks[0].notes:
        chunks.append(_track_chunk([(0, _EVENT, _meta(TRACK_NAME, b"Conductor"))] + conductor, 0))
        conductor = []

    channels, programs = _assign_channels(tracks)
    for i, track in enumerate(tracks):
        ch = channels[i]
        layers = _layers(track.notes)
        for layer, notes in enumerate(layers):
            events: list[tuple[int, int, bytes]] = []
            if layer == 0:
                events += conductor if i == 0 else []
                events += [(e.tick, _EVENT, _event_bytes(e)) for e in _named_events(track)]
                events += programs.get(i, [])
            else:
                events.append((0, _EVENT, _meta(TRACK_NAME, f"{track.label} {layer + 1}".encode("utf-8"))))
            for n, instant in notes:
                pitch, velocity = min(max(n.pitch, 0), 127), min(max(n.velocity, 1), 127)
                if instant:
                    events.append((n.start, _INSTANT_ON, bytes((0x90 | ch, pitch, velocity))))
                    events.append((n.start, _INSTANT_OFF, bytes((0x80 | ch, pitch, 0))))
                    continue
                end = n.start + max(n.duration, 1)  # zero-length notes are otherwise written one tick long
                events.append((n.start, _NOTE_ON, bytes((0x90 | ch, pitch, velocity))))
                events.append((end, _NOTE_OFF, bytes((0x80 | ch, pitch, 0))))
            chunks.append(_track_chunk(events, track.end if layer == 0 else 0))
    header = b"MThd" + struct.pack(">LHHH", 6, 1, len(chunks), TICKS_PER_BEAT)
    return header + b"".join(chunks)


def _meta(meta_type: int, payload: bytes) -> bytes:
    return bytes((0xFF, meta_type)) + _vlq(len(payload)) + payload


def _event_bytes(e: Event) -> bytes:
    """The event as it sits in a track chunk: meta and sysex events carry their length."""
    if e.data[0] == 0xFF:
        return _meta(e.data[1], e.data[2:])
    if e.data[0] in (0xF0, 0xF7):
        return e.data[:1] + _vlq(len(e.data) - 1) + e.data[1:]
    return e.data


def _named_events(track: Track) -> list[Event]:
    """The track's events with its name: the file's own name event when the name is unchanged (its bytes
    kept exactly), else one made from `track.name`."""
    events = list(track.events)
    i = next((k for k, e in enumerate(events) if e.meta_type == TRACK_NAME and e.tick == 0), None)
    name = track.name
    if i is not None and decode_text(events[i].payload) == name:
        return events
    if i is not None:
        del events[i]
    if name:
        events.insert(0, Event.meta(0, TRACK_NAME, name.encode("utf-8")))
    return events


def _track_chunk(events: list[tuple[int, int, bytes]], end: int) -> bytes:
    body = bytearray()
    now = 0
    for tick, _, data in sorted(events, key=lambda e: (e[0], e[1])):  # stable: one tick keeps its order
        body += _vlq(max(tick - now, 0)) + data
        now = max(now, tick)
    body += _vlq(max(end - now, 0)) + b"\xff\x2f\x00"
    return b"MTrk" + struct.pack(">L", len(body)) + bytes(body)


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | value & 0x7F)
        value >>= 7
    return bytes(reversed(out))


def _layers(notes: list[Note]) -> list[list[tuple[Note, bool]]]:
    """Split a track's notes into layers that a first-in-first-out reader gives back exactly: within a
    layer, notes of one pitch start at different ticks and end in the order they start. The one exception:
    a zero-length note (a grace note) and a note of its key that start at one tick share a layer, the
    zero-length one written "on, off" at that tick (instant: True) before the other's note-on."""
    layers: list[list[tuple[Note, bool]]] = [[]]
    # per layer: pitch -> (start, end, index in the layer, end of the note of that pitch before it)
    last: list[dict[int, tuple[int, int, int, int]]] = [{}]
    for n in sorted(notes, key=lambda n: (n.start, n.pitch, n.duration)):
        end = n.start + max(n.duration, 1)
        layer, instant_before = None, None
        for i, seen in enumerate(last):
            prev = seen.get(n.pitch)
            if prev is None or (prev[0] < n.start and prev[1] <= end):
                layer = i
                break
            prev_note = layers[i][prev[2]][0]
            if prev[0] == n.start and prev_note.duration <= 0 < n.duration and prev[3] <= n.start:
                layer, instant_before = i, prev[2]
                break
        if layer is None:
            layer = len(layers)
            layers.append([])
            last.append({})
        if instant_before is not None:
            layers[layer][instant_before] = (layers[layer][instant_before][0], True)
        before = last[layer].get(n.pitch)
        previous_end = -1 if before is None else (n.start if instant_before is not None else before[1])
        layers[layer].append((n, False))
        last[layer][n.pitch] = (n.start, end, len(layers[layer]) - 1, previous_end)
    return layers


def _assign_channels(tracks: list[Track]) -> tuple[list[int], dict[int, list[tuple[int, int, bytes]]]]:
    """The channel of every track (core.channels' rule, which live output follows too), and program changes
    (by track index) for the tracks that had no channel: wherever the program differs on a shared channel."""
    channels, _ = track_channels(tracks)
    # Program changes: walk the note starts of the channel-less tracks on each channel in time order.
    programs: dict[int, list[tuple[int, int, bytes]]] = defaultdict(list)
    starts_by_channel: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, t in enumerate(tracks):
        if t.channel is None and not t.drum and t.notes:
            starts_by_channel[channels[i]] += [(n.start, i) for n in t.notes]
    for ch, starts in starts_by_channel.items():
        current = None
        for tick, i in sorted(starts):
            if tracks[i].program != current:
                at = tick if current is not None else 0  # a channel's first program is set at the start
                current = tracks[i].program
                programs[i].append((at, _EVENT, bytes((0xC0 | ch, min(max(current, 0), 127)))))
    return channels, programs

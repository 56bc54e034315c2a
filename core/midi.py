"""MIDI files <-> Score, with a report of what was dropped or changed and why.

Reading is tolerant of real-world files and strict about what cannot be trusted:
- The Standard MIDI File framing is parsed here rather than by `mido.MidiFile`, because mido gives up on the
  whole file for one undecodable meta event or an unknown chunk, and cannot stop at a size cap before it has
  built every message. Unknown chunks are skipped, a RIFF (RMID) wrapper is unwrapped, caps apply while reading.
  Files are written through mido (`score_to_midifile`).
- Type 0 and 1 are read; type 2 (independent sequences) is refused. SMPTE time is converted to beats at 120 BPM.
- Note pairing: per track, channel and pitch, first in first out: a note-off ends the OLDEST sounding note of
  its pitch. (With LIFO, the common "new note-on, then the old note's note-off at the same tick" would give the
  new note zero length.) A note-on with velocity 0 is a note-off; CC120/CC123 end every note on the channel.
- Program changes and the sustain pedal act on a channel, whatever track they sit in (MIDI semantics): a note
  takes the program in force on its channel at its start.
- Sustain pedal (CC64 >= 64) is folded into note durations, so what the model learns is what sounds: a note
  released under the pedal lasts until the pedal lifts, or until the same key is struck again on that channel.
- Notes never released end at their track's end; zero-length notes get MIN_NOTE_TICKS.
- Meter changes land on bar lines: one placed mid-bar moves to the next bar line of the meter in force.
- Controllers, pitch bend, aftertouch, sysex are dropped and counted; tempo 0 and absurd meters are ignored.
"""
from __future__ import annotations

import bisect
import os
import struct
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import mido

from .atomic import atomic_write
from .score import DRUM_CHANNEL, TICKS_PER_BEAT, Note, Score, TempoChange, TimeSignature

MAX_FILE_BYTES = 16 * 1024 * 1024  # far above any real score; larger files are almost surely not music
MAX_NOTES = 250_000
MAX_BEATS = 20_000  # piece length cap (~2.8 h at 120 BPM); protects against absurd delta times
MIN_NOTE_TICKS = TICKS_PER_BEAT // 32  # length given to zero-length notes (a 1/128 note)
MAX_BPM = 1000.0
SMPTE_BPM = 120.0  # SMPTE files count seconds, not beats: map them onto this tempo
PEDAL_CONTROLLER = 64
ALL_NOTES_OFF_CONTROLLERS = (120, 123)  # all sound off, all notes off


class MidiReadError(Exception):
    """The one exception for a file that cannot be read; str(e) is a one-line reason."""


@dataclass
class ReadReport:
    """What reading a file dropped or changed, one line each. `altered` is False when every message is
    purely informative (e.g. "type 0 file") and the Score holds all the file's notes, tempi and meters."""
    messages: list[str] = field(default_factory=list)
    altered: bool = False

    def add(self, message: str, altered: bool = True) -> None:
        self.messages.append(message)
        self.altered = self.altered or altered

    def __str__(self) -> str:
        return "\n".join(self.messages) if self.messages else "read as is"


# --- reading ---------------------------------------------------------------------------------
def read_midi(source: str | os.PathLike | bytes, *, max_bytes: int = MAX_FILE_BYTES,
              max_notes: int = MAX_NOTES) -> tuple[Score, ReadReport]:
    """Read a MIDI file (a path or its bytes). Raises MidiReadError, and only that, if it cannot be read."""
    data = _load_bytes(source, max_bytes)
    try:
        return _FileReader(data, max_notes).read()
    except MidiReadError:
        raise
    except (ValueError, IndexError, KeyError, struct.error, OverflowError, ZeroDivisionError) as e:
        raise MidiReadError(f"corrupt MIDI file ({type(e).__name__}: {e})") from e


def _load_bytes(source: str | os.PathLike | bytes, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            size = os.path.getsize(source)
            if size > max_bytes:
                raise MidiReadError(f"file is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit")
            with open(source, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as e:
            raise MidiReadError(f"cannot read {os.fspath(source)!s}: {e.strerror or e}") from e
    if len(data) > max_bytes:
        raise MidiReadError(f"file is {_megabytes(len(data))}, over the {_megabytes(max_bytes)} limit")
    return data


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


class _Truncated(Exception):
    """An event runs past the end of its track chunk."""


@dataclass(slots=True)
class _RawNote:
    start: int  # file ticks
    end: int
    channel: int
    pitch: int
    velocity: int


class _NotePairing:
    """Per-track state that matches note-offs to note-ons (first in, first out per channel and key)."""

    def __init__(self) -> None:
        self.sounding: dict[tuple[int, int], deque[tuple[int, int]]] = defaultdict(deque)  # key -> (tick, velocity)
        self.early_offs: dict[tuple[int, int], int] = {}  # key -> tick of a note-off that found nothing sounding
        self.spare_offs: Counter[tuple[int, int]] = Counter()  # note-offs owed by dropped duplicate note-ons


class _FileReader:
    """One pass over the file's chunks, collecting notes and channel/tempo/meter timelines in file ticks."""

    def __init__(self, data: bytes, max_notes: int):
        self.data = data
        self.max_notes = max_notes
        self.report = ReadReport()
        self.notes: list[_RawNote] = []
        self.programs: dict[int, list[tuple[int, int]]] = defaultdict(list)  # channel -> [(tick, program)]
        self.pedal: dict[int, list[tuple[int, bool]]] = defaultdict(list)  # channel -> [(tick, down)]
        self.tempos: list[tuple[int, int]] = []  # (tick, microseconds per beat)
        self.meters: list[tuple[int, int, int]] = []  # (tick, numerator, denominator)
        self.counts: Counter[tuple[str, str, bool]] = Counter()  # (verb, what, altered) -> count
        self.cut_tracks = 0
        self.notes_dropped = 0

    # -- framing ------------------------------------------------------------------------------
    def read(self) -> tuple[Score, ReadReport]:
        data = self._unwrap_riff(self.data)
        start = data.find(b"MThd", 0, 1024)
        if start < 0:
            raise MidiReadError("not a MIDI file (no MThd header)")
        if start > 0:
            self.report.add(f"skipped {start} bytes before the MIDI header", altered=False)
        if len(data) < start + 14:
            raise MidiReadError("truncated MIDI header")
        header_len = struct.unpack_from(">L", data, start + 4)[0]
        if header_len < 6:
            raise MidiReadError(f"MIDI header too short ({header_len} bytes)")
        fmt, announced, division = struct.unpack_from(">HHH", data, start + 8)
        if fmt == 2:
            raise MidiReadError("type 2 MIDI file (independent sequences) is not supported")
        if fmt > 2:
            raise MidiReadError(f"unknown MIDI file format {fmt}")
        self._set_division(division)
        if fmt == 0:
            self.report.add("type 0 file: one track, split into instruments by channel and program", altered=False)

        pos, n_tracks = start + 8 + header_len, 0
        while pos + 8 <= len(data):
            chunk_id, length = data[pos:pos + 4], struct.unpack_from(">L", data, pos + 4)[0]
            body, end = pos + 8, pos + 8 + length
            if chunk_id != b"MTrk":
                if end > len(data) or not chunk_id.isalnum():
                    self.report.add(f"ignored {len(data) - pos} bytes of trailing data", altered=False)
                    break
                self.report.add(f"skipped an unknown {chunk_id.decode('latin1')!r} chunk", altered=False)
                pos = end
                continue
            n_tracks += 1
            self._read_track(data, body, min(end, len(data)), n_tracks, file_ends_early=end > len(data))
            pos = end
        if 0 < len(data) - pos < 8:
            if n_tracks < announced:
                raise MidiReadError(f"truncated file: the header of track {n_tracks + 1} is cut off")
            self.report.add(f"ignored {len(data) - pos} bytes of trailing data", altered=False)
        if n_tracks == 0:
            raise MidiReadError("no track in the MIDI file")
        if n_tracks != announced:
            self.report.add(f"the header announces {announced} tracks, the file has {n_tracks}",
                            altered=n_tracks < announced)
        return self._build_score(), self.report

    @staticmethod
    def _unwrap_riff(data: bytes) -> bytes:
        """RMID files wrap a standard MIDI file in a RIFF 'data' chunk."""
        if data[:4] != b"RIFF" or data[8:12] != b"RMID":
            return data
        pos = 12
        while pos + 8 <= len(data):
            chunk_id, length = data[pos:pos + 4], struct.unpack_from("<L", data, pos + 4)[0]
            if chunk_id == b"data":
                return data[pos + 8:pos + 8 + length]
            pos += 8 + length + (length & 1)
        raise MidiReadError("RIFF file without a MIDI 'data' chunk")

    def _set_division(self, division: int) -> None:
        if division & 0x8000:  # SMPTE: -frames per second in the high byte, ticks per frame in the low
            fps_code, per_frame = 256 - (division >> 8), division & 0xFF
            fps = {24: 24.0, 25: 25.0, 29: 29.97, 30: 30.0}.get(fps_code)
            if fps is None or per_frame == 0:
                raise MidiReadError(f"invalid SMPTE division ({fps_code} fps x {per_frame})")
            self.smpte = True
            self.file_ticks_per_beat = fps * per_frame * 60.0 / SMPTE_BPM
            self.report.add(f"SMPTE division converted at {fps_code} fps x {per_frame} "
                            f"(seconds mapped to beats at {SMPTE_BPM:g} BPM)", altered=False)
        else:
            if division == 0:
                raise MidiReadError("ticks per beat is 0")
            self.smpte = False
            self.file_ticks_per_beat = division
        self.tick_cap = int(MAX_BEATS * self.file_ticks_per_beat)

    def _to_score_ticks(self, tick: int) -> int:
        if self.smpte:
            return round(tick * TICKS_PER_BEAT / self.file_ticks_per_beat)
        return (2 * tick * TICKS_PER_BEAT + self.file_ticks_per_beat) // (2 * self.file_ticks_per_beat)

    # -- events -------------------------------------------------------------------------------
    def _read_track(self, data: bytes, pos: int, end: int, index: int, file_ends_early: bool) -> None:
        pairing = _NotePairing()
        tick, running, ended = 0, None, False
        try:
            while pos < end:
                delta, pos = _read_vlq(data, pos, end)
                tick += delta
                if tick > self.tick_cap:
                    self.cut_tracks += 1
                    tick, ended = self.tick_cap, True
                    break
                if pos >= end:
                    raise _Truncated
                status = data[pos]
                if status < 0x80:
                    if running is None:
                        raise MidiReadError(f"track {index}: data byte without a status byte")
                    status = running
                else:
                    pos += 1
                if status < 0xF0:
                    running = status
                    size = 1 if status & 0xE0 == 0xC0 else 2  # program change, channel pressure: one byte
                    if pos + size > end:
                        raise _Truncated
                    d1, d2 = data[pos], data[pos + 1] if size == 2 else 0
                    if d1 > 127 or d2 > 127:
                        raise MidiReadError(f"track {index}: invalid data byte at offset {pos}")
                    pos += size
                    self._channel_event(status, d1, d2, tick, pairing)
                elif status == 0xFF:
                    if pos >= end:
                        raise _Truncated
                    meta_type = data[pos]
                    length, pos = _read_vlq(data, pos + 1, end)
                    if pos + length > end:
                        raise _Truncated
                    payload = data[pos:pos + length]
                    pos += length
                    if meta_type == 0x2F:
                        ended = True
                        break
                    self._meta_event(meta_type, payload, tick)
                elif status in (0xF0, 0xF7):
                    length, pos = _read_vlq(data, pos, end)
                    if pos + length > end:
                        raise _Truncated
                    pos += length
                    self._count("dropped", "system exclusive messages")
                else:  # system common / real-time bytes do not belong in a file: skip them
                    pos += {0xF1: 1, 0xF2: 2, 0xF3: 1}.get(status, 0)
                    self._count("dropped", "stray system messages")
        except _Truncated:
            if file_ends_early:
                raise MidiReadError(f"truncated file: track {index} is cut off") from None
            self._count("dropped", "events cut off at a track's end")
        if file_ends_early and not ended:
            raise MidiReadError(f"truncated file: track {index} is cut off")
        leftover = sum(len(q) for q in pairing.sounding.values())
        if leftover:
            self._count("closed", "notes never released, at their track's end", leftover)
            for (channel, pitch), queue in pairing.sounding.items():
                for start, velocity in queue:
                    self._add_note(start, tick, channel, pitch, velocity)

    def _channel_event(self, status: int, d1: int, d2: int, tick: int,
                       pairing: _NotePairing) -> None:
        kind, channel = status & 0xF0, status & 0x0F
        if kind == 0x90 and d2 > 0:
            key = (channel, d1)
            if pairing.early_offs.pop(key, None) == tick:
                # Writers that sort note-offs first at each tick put a zero-length note's off before its on.
                self._count("ignored", "note-offs without a note-on", -1, altered=False)
                self._add_note(tick, tick, channel, d1, d2)
                return
            queue = pairing.sounding[key]
            if queue and queue[-1][0] == tick:  # the same key struck twice at once sounds once
                self._count("dropped", "duplicate note-ons (same key, same tick)")
                pairing.spare_offs[key] += 1
                return
            if queue:
                self._count("paired first in, first out:", "notes struck again while sounding", altered=False)
            queue.append((tick, d2))
        elif kind == 0x80 or kind == 0x90:
            key = (channel, d1)
            queue = pairing.sounding.get(key)
            if queue:
                start, velocity = queue.popleft()
                self._add_note(start, tick, channel, d1, velocity)
            elif pairing.spare_offs[key]:  # the note-off of a dropped duplicate
                pairing.spare_offs[key] -= 1
            else:
                pairing.early_offs[key] = tick
                self._count("ignored", "note-offs without a note-on", altered=False)
        elif kind == 0xC0:
            self.programs[channel].append((tick, d1))
        elif kind == 0xB0:
            if d1 == PEDAL_CONTROLLER:
                self.pedal[channel].append((tick, d2 >= 64))
            elif d1 in ALL_NOTES_OFF_CONTROLLERS:
                for (ch, pitch), queue in pairing.sounding.items():
                    while ch == channel and queue:
                        start, velocity = queue.popleft()
                        self._add_note(start, tick, ch, pitch, velocity)
            else:
                self._count("dropped", "controller events")
        elif kind == 0xE0:
            if (d1, d2) != (0, 64):  # the centre value only resets the bend: nothing lost
                self._count("dropped", "pitch bends")
        else:
            self._count("dropped", "aftertouch events")

    def _count(self, verb: str, what: str, n: int = 1, altered: bool = True) -> None:
        self.counts[(verb, what, altered)] += n

    def _add_note(self, start: int, end: int, channel: int, pitch: int, velocity: int) -> None:
        if len(self.notes) >= self.max_notes:
            self.notes_dropped += 1
        else:
            self.notes.append(_RawNote(start, end, channel, pitch, velocity))

    def _meta_event(self, meta_type: int, payload: bytes, tick: int) -> None:
        if meta_type == 0x51:
            if len(payload) < 3:
                self._count("ignored", "malformed tempo events")
            elif self.smpte:
                self._count("ignored", "tempo events (SMPTE time does not follow them)", altered=False)
            else:
                tempo = payload[0] << 16 | payload[1] << 8 | payload[2]
                if tempo == 0 or 60e6 / tempo > MAX_BPM:
                    self._count("ignored", f"tempo events of 0 or over {MAX_BPM:g} BPM")
                else:
                    self.tempos.append((tick, tempo))
        elif meta_type == 0x58:
            if len(payload) < 2 or not 1 <= payload[0] <= 64 or payload[1] > 6:
                self._count("ignored", "malformed or absurd time signatures")
            else:
                self.meters.append((tick, payload[0], 2 ** payload[1]))

    # -- assembly -----------------------------------------------------------------------------
    def _build_score(self) -> Score:
        lengthened = self._fold_sustain()
        programs = {ch: (sorted(changes, key=lambda c: c[0])) for ch, changes in self.programs.items()}
        program_ticks = {ch: [t for t, _ in changes] for ch, changes in programs.items()}
        notes, zero_length = [], 0
        for raw in self.notes:
            start = self._to_score_ticks(raw.start)
            duration = self._to_score_ticks(raw.end) - start
            if duration <= 0:
                duration, zero_length = MIN_NOTE_TICKS, zero_length + 1
            drum = raw.channel == DRUM_CHANNEL
            program = 0
            if not drum and raw.channel in programs:
                i = bisect.bisect_right(program_ticks[raw.channel], raw.start) - 1
                program = programs[raw.channel][i][1] if i >= 0 else 0
            notes.append(Note(start, duration, raw.pitch, raw.velocity, program, drum))
        score = Score(notes, self._tempo_map(), self._meter_map())

        r = self.report
        if lengthened:
            r.add(f"sustain pedal folded into note durations: {lengthened} notes lengthened")
        if zero_length:
            r.add(f"gave {zero_length} zero-length notes the minimum length ({MIN_NOTE_TICKS} ticks)")
        for (verb, what, altered), count in self.counts.items():
            if count:
                r.add(f"{verb} {count} {what}", altered=altered)
        if self.cut_tracks:
            r.add(f"cut the piece at beat {MAX_BEATS}: dropped the rest of {self.cut_tracks} tracks "
                  "(absurd delta times?)")
        if self.notes_dropped:
            r.add(f"kept the first {self.max_notes} notes, dropped {self.notes_dropped} more")
        if not notes:
            r.add("the file has no notes", altered=False)
        return score

    def _fold_sustain(self) -> int:
        """Extend notes released under the pedal to the pedal's release; returns how many grew."""
        if not self.pedal:
            return 0
        piece_end = max((n.end for n in self.notes), default=0)
        intervals: dict[int, tuple[list[int], list[int]]] = {}  # channel -> (down ticks, up ticks)
        for channel, events in self.pedal.items():
            downs, ups, down_at = [], [], None
            for tick, down in sorted(events, key=lambda e: e[0]):
                if down and down_at is None:
                    down_at = tick
                elif not down and down_at is not None:
                    downs.append(down_at)
                    ups.append(tick)
                    down_at = None
            if down_at is not None:  # never lifted: held to the end of the piece
                downs.append(down_at)
                ups.append(max(piece_end, down_at))
            intervals[channel] = (downs, ups)
        strikes: dict[tuple[int, int], list[int]] = defaultdict(list)
        for n in self.notes:
            strikes[(n.channel, n.pitch)].append(n.start)
        for starts in strikes.values():
            starts.sort()
        lengthened = 0
        for n in self.notes:
            if n.channel == DRUM_CHANNEL or n.channel not in intervals:
                continue
            downs, ups = intervals[n.channel]
            i = bisect.bisect_right(downs, n.end) - 1
            if i < 0 or ups[i] <= n.end:
                continue
            starts = strikes[(n.channel, n.pitch)]
            j = bisect.bisect_right(starts, n.start)
            new_end = min(ups[i], starts[j]) if j < len(starts) else ups[i]
            if new_end > n.end:
                n.end, lengthened = new_end, lengthened + 1
        return lengthened

    def _tempo_map(self) -> list[TempoChange]:
        if self.smpte:
            return [TempoChange(0, SMPTE_BPM)]
        tempos = [TempoChange(self._to_score_ticks(t), round(60e6 / us, 3))
                  for t, us in sorted(self.tempos, key=lambda c: c[0])]
        if not tempos or tempos[0].tick != 0:
            tempos.insert(0, TempoChange(0, 120.0))  # the MIDI default before any tempo event
        return tempos

    def _meter_map(self) -> list[TimeSignature]:
        """Meter changes on bar lines: one placed mid-bar moves to the next bar line of the meter in force."""
        meters = [TimeSignature(0, 4, 4)]  # the MIDI default before any time signature
        moved = 0
        for file_tick, num, den in sorted(self.meters, key=lambda m: m[0]):
            current = meters[-1]
            offset = max(self._to_score_ticks(file_tick) - current.tick, 0)
            bars = -(-offset // current.bar_ticks)
            if bars * current.bar_ticks != offset:
                moved += 1
            tick = current.tick + bars * current.bar_ticks
            if tick == current.tick:
                meters[-1] = TimeSignature(tick, num, den)
            else:
                meters.append(TimeSignature(tick, num, den))
        if moved:
            self.report.add(f"moved {moved} time signature changes placed mid-bar to the next bar line")
        return meters


def _read_vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable-length quantity (at most 4 bytes) at `pos`; returns (value, position after it)."""
    value = 0
    for _ in range(4):
        if pos >= end:
            raise _Truncated
        byte = data[pos]
        pos += 1
        value = value << 7 | byte & 0x7F
        if byte < 0x80:
            return value, pos
    raise MidiReadError(f"invalid variable-length number at offset {pos - 4}")


# --- writing ---------------------------------------------------------------------------------
PITCHED_CHANNELS = [c for c in range(16) if c != DRUM_CHANNEL]
_NOTE_OFF, _PROGRAM, _NOTE_ON = 0, 1, 2  # order of events that share a tick within a track


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Write a type 1 file atomically (a temporary file beside it, then a rename)."""
    midi_file = score_to_midifile(score)
    with atomic_write(path) as fh:
        midi_file.save(file=fh)


def score_to_midifile(score: Score) -> mido.MidiFile:
    """Type 1: a conductor track (tempo, meter), then one track per instrument on its own channel, drums on
    channel 10. With more than 15 pitched instruments, channels are shared and program changes switch them."""
    mf = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = [(t.tick, 0, mido.MetaMessage("set_tempo", tempo=min(max(round(60e6 / t.bpm), 1), 0xFFFFFF)))
                 for t in score.tempos]
    conductor += [(ts.tick, 0, mido.MetaMessage("time_signature", numerator=ts.numerator,
                                                denominator=ts.denominator))
                  for ts in score.time_signatures]  # metas are few: built with mido's checks
    mf.tracks.append(_to_track(conductor, "Conductor"))

    tracks = score.tracks()
    channels = _assign_channels(tracks)
    layered = [_layers(track.notes) for track in tracks]
    # Channel events as (tick, order, type, fields); values are clamped here, so mido may skip its checks.
    events: list[list[list[tuple]]] = [[[] for _ in layers] for layers in layered]
    for i, layers in enumerate(layered):
        ch = channels[i]
        for layer, notes in enumerate(layers):
            for n in notes:
                pitch, velocity = min(max(n.pitch, 0), 127), min(max(n.velocity, 1), 127)
                events[i][layer] += [
                    (n.start, _NOTE_ON, "note_on", {"channel": ch, "note": pitch, "velocity": velocity}),
                    (n.start + max(n.duration, 1), _NOTE_OFF, "note_off", {"channel": ch, "note": pitch})]
    # Program changes: walk each channel's note starts in time order, switching program where it differs.
    starts_by_channel: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, track in enumerate(tracks):
        if not track.drum:
            starts_by_channel[channels[i]] += [(n.start, i) for n in track.notes]
    for ch, starts in starts_by_channel.items():
        current = None
        for tick, i in sorted(starts):
            if tracks[i].program != current:
                at = tick if current is not None else 0  # a channel's first program is set at the start
                current = tracks[i].program
                events[i][0].append((at, _PROGRAM, "program_change",
                                     {"channel": ch, "program": min(max(current, 0), 127)}))
    for track, layers in zip(tracks, events):
        for layer, layer_events in enumerate(layers):
            mf.tracks.append(_to_track(layer_events, track.name if layer == 0 else f"{track.name} {layer + 1}"))
    return mf


def _layers(notes: list[Note]) -> list[list[Note]]:
    """Split an instrument's notes so that no layer has two overlapping notes of one pitch: each layer becomes
    a track on the instrument's channel, and the reader, which pairs note-offs per track, gets them back."""
    layers: list[list[Note]] = [[]]
    ends: list[dict[int, int]] = [{}]  # per layer: pitch -> end of its last note
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        layer = next((i for i, e in enumerate(ends) if e.get(n.pitch, -1) <= n.start), None)
        if layer is None:
            layer = len(layers)
            layers.append([])
            ends.append({})
        layers[layer].append(n)
        ends[layer][n.pitch] = n.start + max(n.duration, 1)
    return layers


def _assign_channels(tracks) -> list[int]:
    """Drums on channel 10; the first 15 pitched instruments get a channel each, any further one shares the
    channel whose note starts collide least with its own (two programs cannot start notes on one channel at
    the same tick)."""
    channels, used = [], {}
    for track in tracks:
        starts = {n.start for n in track.notes}
        if track.drum:
            channels.append(DRUM_CHANNEL)
            continue
        free = [c for c in PITCHED_CHANNELS if c not in used]
        ch = free[0] if free else min(PITCHED_CHANNELS, key=lambda c: (len(used[c] & starts), len(used[c])))
        used.setdefault(ch, set()).update(starts)
        channels.append(ch)
    return channels


def _to_track(events: list[tuple], name: str) -> mido.MidiTrack:
    """A track from (tick, order, meta message) or (tick, order, type, clamped fields) events."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name))
    now = 0
    for tick, _, *what in sorted(events, key=lambda e: (e[0], e[1])):
        if len(what) == 1:
            track.append(what[0].copy(time=tick - now))
        else:
            track.append(mido.Message(what[0], skip_checks=True, time=tick - now, **what[1]))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track

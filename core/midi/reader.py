"""MIDI file -> Score, with a report of what was dropped or changed and why (writing: core.midi.writer;
both are imported from core.midi).

Reading is tolerant of real-world files and strict about what cannot be trusted:
- The Standard MIDI File framing is parsed here rather than by `mido.MidiFile`, because mido gives up on the
  whole file for one undecodable meta event or an unknown chunk, and cannot stop at a size cap before it has
  built every message. Unknown chunks are skipped, a RIFF (RMID) wrapper is unwrapped, caps apply while reading.
  A track chunk whose declared length is wrong (past the end of the file, or over the next track) is read up
  to its end-of-track, the next chunk is read from there, and the report says so.
- Type 0 and 1 are read; type 2 (independent sequences) is refused. SMPTE time is converted to beats at 120 BPM.
- The Score keeps the file's tracks: name, channel, program, notes, and every other channel, meta and system
  exclusive event as its bytes (controllers, the sustain pedal, pitch bend, aftertouch, text, markers,
  lyrics...), written back unchanged. A track whose notes use several channels (type 0) becomes one track
  per channel; its other events stay with the first. Tempo and time signature events become the tempo map
  and the meter. Folding the sustain pedal into durations happens only in the tokenizer's view (Score.notes).
- Note pairing (core.midi.pairing): per track, channel and key, first in first out: a note-off ends the
  OLDEST sounding note of its key. A note-on with velocity 0 is a note-off; CC120/CC123 end every note on the
  channel. A note-off that finds no sounding note of its key is ignored (it never cuts a later note short).
- Program changes act on a channel, whatever track they sit in (MIDI semantics): a note takes the program in
  force on its channel at its start.
- Notes never released end at their track's end; zero-length notes stay zero-length in the document.
- Meter changes land on bar lines: one placed mid-bar moves to the next bar line of the meter in force.
- A file without a time signature is in 4/4 (the MIDI default) marked undeclared, and is written back without
  one. Where the meter cannot be the music's (none declared, a bar line on every beat as 1/4 or 1/8
  throughout, or the beats of a performance between the file's), the Score keeps what the file says and the
  model's view (Score.token_view) reads the meter core.meter infers from the notes, and notes quantised to a
  grid of their own off the file's a constant number of ticks later, on the tokenizer's grid; the report
  says so ("... the model reads it as 4/4 from beat 3, its notes 58 ticks later to fall on the grid").
- Tempo 0 and absurd meters are ignored; stray system real-time/common bytes are dropped.
"""
from __future__ import annotations

import bisect
import functools
import os
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .pairing import NotePairing
from ..score import (DEFAULT_BPM, DRUM_CHANNEL, MIN_NOTE_TICKS, PEDAL_CONTROLLER, TICKS_PER_BEAT, TRACK_NAME, Event,
                    Note, Score, TempoChange, TimeSignature, Track, tokenizer_notes)

MAX_FILE_BYTES = 16 * 1024 * 1024  # far above any real score; larger files are almost surely not music
MAX_NOTES = 250_000
MAX_BEATS = 20_000  # piece length cap (~2.8 h at 120 BPM); protects against absurd delta times
MAX_BPM = 1000.0
SMPTE_BPM = DEFAULT_BPM  # SMPTE files count seconds, not beats: map them onto this tempo
ALL_NOTES_OFF_CONTROLLERS = (120, 123)  # all sound off, all notes off
END_OF_TRACK = 0x2F  # meta event type


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


@dataclass
class _TrackData:
    """One track chunk as read, in file ticks."""
    notes: list[_RawNote] = field(default_factory=list)
    events: list[tuple[int, bytes]] = field(default_factory=list)
    end: int = 0


class _TrackCursor:
    """The read position in one track chunk, its running status and its time. Every read past the chunk's
    end raises _Truncated, and `pos` moves only once a whole part of an event has been read: where a cut
    event stops it is what the caller compares with the chunk's declared end."""

    def __init__(self, data: bytes, pos: int, end: int, index: int):
        self.data, self.pos, self.end, self.index = data, pos, end, index
        self.tick = 0  # file ticks
        self.running: int | None = None  # the running status: the last channel status byte

    def vlq(self) -> int:
        """A variable-length quantity: most are one byte (a delta time of 0 to 127 ticks)."""
        pos = self.pos
        if pos < self.end and self.data[pos] < 0x80:
            self.pos = pos + 1
            return self.data[pos]
        value, self.pos = _read_vlq(self.data, pos, self.end)
        return value

    def status(self) -> int:
        """The event's status byte: its own, or the running status before a data byte."""
        if self.pos >= self.end:
            raise _Truncated
        status = self.data[self.pos]
        if status < 0x80:
            if self.running is None:
                raise MidiReadError(f"track {self.index}: data byte without a status byte")
            return self.running
        self.pos += 1
        if status < 0xF0:
            self.running = status
        return status

    def channel_data(self, status: int) -> tuple[int, int]:
        """The data bytes of a channel message (the second is 0 for a one-byte message)."""
        size = 1 if status & 0xE0 == 0xC0 else 2  # program change, channel pressure: one byte
        if self.pos + size > self.end:
            raise _Truncated
        d1, d2 = self.data[self.pos], self.data[self.pos + 1] if size == 2 else 0
        if d1 > 127 or d2 > 127:
            raise MidiReadError(f"track {self.index}: invalid data byte at offset {self.pos}")
        self.pos += size
        return d1, d2

    def meta(self) -> tuple[int, bytes]:
        """A meta event's type and payload (after its 0xFF)."""
        if self.pos >= self.end:
            raise _Truncated
        meta_type = self.data[self.pos]
        length, self.pos = _read_vlq(self.data, self.pos + 1, self.end)
        return meta_type, self.payload(length)

    def payload(self, length: int) -> bytes:
        if self.pos + length > self.end:
            raise _Truncated
        self.pos += length
        return self.data[self.pos - length:self.pos]


class _FileReader:
    """One pass over the file's chunks, collecting notes and channel/tempo/meter timelines in file ticks."""

    def __init__(self, data: bytes, max_notes: int):
        self.data = data
        self.max_notes = max_notes
        self.report = ReadReport()
        self.tracks: list[_TrackData] = []
        self.n_notes = 0
        self.programs: dict[int, list[tuple[int, int]]] = defaultdict(list)  # channel -> [(tick, program)]
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
            stop = self._read_track(data, body, min(end, len(data)), n_tracks, file_ends_early=end > len(data))
            if stop < end and (end > len(data) or data.startswith(b"MTrk", stop)):
                # The declared length is wrong: the track ended at its end-of-track, the next chunk follows.
                where = "past the end of the file" if end > len(data) else "over the next track"
                self.report.add(f"track {n_tracks}: its chunk length runs {where}; read it up to its "
                                "end-of-track and went on from there", altered=False)
                pos = stop
            else:
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
    def _read_track(self, data: bytes, pos: int, end: int, index: int, file_ends_early: bool) -> int:
        """Read one track chunk's events; returns the position after its end-of-track (or `end`)."""
        cursor = _TrackCursor(data, pos, end, index)
        track = _TrackData()
        self.tracks.append(track)
        pairing = NotePairing(functools.partial(self._add_note, track), self._count)
        try:
            ended = self._read_events(cursor, pairing, track)
        except _Truncated:
            if file_ends_early:
                raise MidiReadError(f"truncated file: track {index} is cut off") from None
            self._count("dropped", "events cut off at a track's end")
            ended = False
        if file_ends_early and not ended:
            raise MidiReadError(f"truncated file: track {index} is cut off")
        track.end = cursor.tick
        pairing.close(cursor.tick)
        return cursor.pos

    def _read_events(self, cursor: _TrackCursor, pairing: NotePairing, track: _TrackData) -> bool:
        """Events up to the end-of-track or the piece's length cap (True), or to the chunk's end (False)."""
        while cursor.pos < cursor.end:
            cursor.tick += cursor.vlq()
            if cursor.tick > self.tick_cap:
                self.cut_tracks += 1
                cursor.tick = self.tick_cap
                return True
            status = cursor.status()
            if status < 0xF0:
                d1, d2 = cursor.channel_data(status)
                self._channel_event(status, d1, d2, cursor.tick, pairing, track)
            elif status == 0xFF:
                meta_type, payload = cursor.meta()
                if meta_type == END_OF_TRACK:
                    return True
                self._meta_event(meta_type, payload, cursor.tick, track)
            elif status in (0xF0, 0xF7):
                track.events.append((cursor.tick, bytes((status,)) + cursor.payload(cursor.vlq())))
                self._count("dropped", "system exclusive messages from the model's view (the piece keeps them)",
                            altered=False)
            else:  # system common / real-time bytes do not belong in a file: skip them
                cursor.pos += {0xF1: 1, 0xF2: 2, 0xF3: 1}.get(status, 0)
                self._count("dropped", "stray system messages")
        return False

    def _channel_event(self, status: int, d1: int, d2: int, tick: int,
                       pairing: NotePairing, track: _TrackData) -> None:
        kind, channel = status & 0xF0, status & 0x0F
        if kind == 0x90 and d2 > 0:
            pairing.note_on(channel, d1, d2, tick)
            return
        if kind == 0x80 or kind == 0x90:  # a note-on of velocity 0 is a note-off
            pairing.note_off(channel, d1, tick)
            return
        track.events.append((tick, bytes((status, d1)) if kind in (0xC0, 0xD0) else bytes((status, d1, d2))))
        if kind == 0xC0:
            self.programs[channel].append((tick, d1))
        elif kind == 0xB0:
            if d1 in ALL_NOTES_OFF_CONTROLLERS:
                pairing.all_notes_off(channel, tick)
            elif d1 != PEDAL_CONTROLLER:
                self._count("dropped", "controller events from the model's view (the piece keeps them)",
                            altered=False)
        elif kind == 0xE0:
            if (d1, d2) != (0, 64):  # the centre value only resets the bend: nothing lost
                self._count("dropped", "pitch bends from the model's view (the piece keeps them)", altered=False)
        else:
            self._count("dropped", "aftertouch events from the model's view (the piece keeps them)",
                        altered=False)

    def _count(self, verb: str, what: str, n: int = 1, altered: bool = True) -> None:
        self.counts[(verb, what, altered)] += n

    def _add_note(self, track: _TrackData, start: int, end: int, channel: int, pitch: int,
                  velocity: int) -> _RawNote | None:
        if self.n_notes >= self.max_notes:
            self.notes_dropped += 1
            return None
        self.n_notes += 1
        note = _RawNote(start, end, channel, pitch, velocity)
        track.notes.append(note)
        return note

    def _meta_event(self, meta_type: int, payload: bytes, tick: int, track: _TrackData) -> None:
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
        else:  # text, names, markers, lyrics, key signatures...: kept as they are
            track.events.append((tick, bytes((0xFF, meta_type)) + payload))

    # -- assembly -----------------------------------------------------------------------------
    def _build_score(self) -> Score:
        programs = {ch: (sorted(changes, key=lambda c: c[0])) for ch, changes in self.programs.items()}
        program_ticks = {ch: [t for t, _ in changes] for ch, changes in programs.items()}

        def program_at(channel: int | None, tick: int) -> int:
            if channel is None or channel == DRUM_CHANNEL or channel not in programs:
                return 0
            i = bisect.bisect_right(program_ticks[channel], tick) - 1
            return programs[channel][i][1] if i >= 0 else 0

        tracks: list[Track] = []
        for data in self.tracks:
            tracks += self._split_track(data, program_at)
        score = Score((), self._tempo_map(), self._meter_map(), tracks=tracks)

        r = self.report
        view_notes, lengthened, zero_length = tokenizer_notes(score.tracks())
        from ..meter import model_meter  # numpy: not at import (core.live's capture reads through this module)
        guess = model_meter(score.time_signatures, view_notes)
        if guess is not None:  # what Score.token_view() does with this file: its meter, and its shift if any
            r.add(guess.describe(), altered=False)
        if lengthened:
            r.add(f"sustain pedal: {lengthened} notes lengthened in the model's view (the piece keeps the pedal)",
                  altered=False)
        if zero_length:
            r.add(f"gave {zero_length} zero-length notes the minimum length ({MIN_NOTE_TICKS} ticks) in the "
                  "model's view", altered=False)
        for (verb, what, altered), count in self.counts.items():
            if count:
                r.add(f"{verb} {count} {what}", altered=altered)
        if self.cut_tracks:
            r.add(f"cut the piece at beat {MAX_BEATS}: dropped the rest of {self.cut_tracks} tracks "
                  "(absurd delta times?)")
        if self.notes_dropped:
            r.add(f"kept the first {self.max_notes} notes, dropped {self.notes_dropped} more")
        if not self.n_notes:
            r.add("the file has no notes", altered=False)
        return score

    def _split_track(self, data: _TrackData, program_at) -> list[Track]:
        """The file's track as document tracks: one per channel its notes use (in order of first use); the
        events of other channels, meta events and sysex stay with the first."""
        ticks = self._to_score_ticks
        first_note: dict[int, int] = {}
        for raw in data.notes:
            first_note[raw.channel] = min(raw.start, first_note.get(raw.channel, raw.start))
        channels: list[int | None] = sorted(first_note, key=lambda ch: (first_note[ch], ch))
        if not channels:
            channels = [next((b[0] & 0x0F for _, b in data.events if b[0] < 0xF0), None)]
        tracks = {ch: Track("", ch, program_at(ch, first_note.get(ch, 0)), ch == DRUM_CHANNEL, [], [], ticks(data.end))
                  for ch in channels}
        for raw in data.notes:
            start = ticks(raw.start)
            tracks[raw.channel].notes.append(Note(start, ticks(raw.end) - start, raw.pitch, raw.velocity,
                                                  program_at(raw.channel, raw.start), raw.channel == DRUM_CHANNEL))
        first = tracks[channels[0]]
        for tick, raw_bytes in data.events:
            channel = raw_bytes[0] & 0x0F if raw_bytes[0] < 0xF0 else None
            (tracks[channel] if channel in tracks else first).events.append(Event(ticks(tick), raw_bytes))
        name = next((e.payload for e in first.events if e.meta_type == TRACK_NAME and e.tick == 0), None)
        if name is not None:
            first.name = decode_text(name)
        return list(tracks.values())

    def _tempo_map(self) -> list[TempoChange]:
        if self.smpte:
            return [TempoChange(0, SMPTE_BPM)]
        tempos = [TempoChange(self._to_score_ticks(t), _bpm(us))
                  for t, us in sorted(self.tempos, key=lambda c: c[0])]
        if not tempos or tempos[0].tick != 0:
            tempos.insert(0, TempoChange(0, DEFAULT_BPM))  # the MIDI default before any tempo event
        return tempos

    def _meter_map(self) -> list[TimeSignature]:
        """Meter changes on bar lines: one placed mid-bar moves to the next bar line of the meter in force."""
        meters = [TimeSignature(0, 4, 4, declared=False)]  # the MIDI default before any time signature
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


def _bpm(us_per_beat: int) -> float:
    """Beats per minute with as few decimals as give back the file's microseconds per beat when written."""
    for digits in (3, 6, 9):
        bpm = round(60e6 / us_per_beat, digits)
        if round(60e6 / bpm) == us_per_beat:
            return bpm
    return 60e6 / us_per_beat


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


def decode_text(payload: bytes) -> str:
    """Text of a meta event: UTF-8 where it is valid, else Latin-1 (every byte is a character)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")

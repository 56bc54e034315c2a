"""core.midi on real-world and broken files, each built with mido (or cut/mutated from one) in the test."""
import io
import random
import struct

import mido
import pytest

from core.midi import (MAX_BEATS, MAX_FILE_BYTES, MIN_NOTE_TICKS, MidiReadError, read_midi)
from core.score import TICKS_PER_BEAT

M, Meta = mido.Message, mido.MetaMessage


def midi_bytes(*tracks, type=1, tpq=480) -> bytes:
    """A MIDI file from lists of mido messages (times are deltas), saved by mido."""
    mf = mido.MidiFile(type=type, ticks_per_beat=tpq)
    for messages in tracks:
        mf.tracks.append(mido.MidiTrack(messages))
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def on(note, time=0, ch=0, vel=80):
    return M("note_on", note=note, velocity=vel, channel=ch, time=time)


def off(note, time=0, ch=0):
    return M("note_off", note=note, channel=ch, time=time)


def spans(score, **match):
    """(start, duration, pitch) of the notes whose fields equal `match`."""
    return [(n.start, n.duration, n.pitch) for n in score.notes
            if all(getattr(n, k) == v for k, v in match.items())]


def has(report, *words):
    return any(all(w in line for w in words) for line in report.messages)


# --- file formats ----------------------------------------------------------------------------------------
def test_type0_with_several_channels_on_one_track():
    data = midi_bytes([M("program_change", program=40, channel=0), M("program_change", program=32, channel=1),
                       on(72, ch=0), on(40, ch=1), on(36, ch=9, vel=100),
                       off(72, 480, ch=0), off(40, 0, ch=1), off(36, 0, ch=9)], type=0)
    score, report = read_midi(data)
    assert {(t.program, t.drum): len(t.notes) for t in score.tracks()} == {(40, False): 1, (32, False): 1,
                                                                          (0, True): 1}
    assert has(report, "type 0") and not report.altered


def test_type1_track_with_several_channels():
    conductor = [Meta("set_tempo", tempo=600000)]
    mixed = [M("program_change", program=0, channel=2), M("program_change", program=24, channel=3),
             on(60, ch=2), on(64, ch=3), off(60, 240, ch=2), off(64, 0, ch=3)]
    score, report = read_midi(midi_bytes(conductor, mixed))
    assert spans(score, program=0) == [(0, 240, 60)] and spans(score, program=24) == [(0, 240, 64)]
    assert score.tempos[0].bpm == 100.0 and not report.altered


def test_type2_is_refused_with_a_reason():
    with pytest.raises(MidiReadError, match="type 2"):
        read_midi(midi_bytes([on(60), off(60, 480)], [on(62), off(62, 480)], type=2))


# --- channels, programs, drums ------------------------------------------------------------------------------
def test_program_change_mid_track_applies_from_its_tick():
    track = [M("program_change", program=0), on(60), off(60, 480),
             M("program_change", program=56, time=0), on(60), off(60, 480), on(62), off(62, 480)]
    score, _ = read_midi(midi_bytes(track))
    assert spans(score, program=0) == [(0, 480, 60)]
    assert spans(score, program=56) == [(480, 480, 60), (960, 480, 62)]


def test_program_change_on_a_channel_applies_to_that_channel_in_every_track():
    programs = [M("program_change", program=71, channel=5)]
    notes = [on(67, ch=5), off(67, 480, ch=5)]
    score, _ = read_midi(midi_bytes(programs, notes))
    assert spans(score, program=71) == [(0, 480, 67)]


def test_channel_10_is_drums():
    track = [M("program_change", program=25, channel=9), on(36, ch=9), off(36, 120, ch=9), on(38, ch=9),
             off(38, 120, ch=9)]
    score, _ = read_midi(midi_bytes(track))
    assert [(n.pitch, n.drum, n.program) for n in score.notes] == [(36, True, 0), (38, True, 0)]


# --- note pairing --------------------------------------------------------------------------------------------
def test_note_on_with_velocity_0_ends_a_note():
    track = [on(60, vel=90), on(60, 480, vel=0), on(62, vel=70), on(62, 240, vel=0)]
    score, report = read_midi(midi_bytes(track))
    assert [(n.start, n.duration, n.pitch, n.velocity) for n in score.notes] == [(0, 480, 60, 90),
                                                                               (480, 240, 62, 70)]
    assert not report.altered


def test_overlapping_notes_of_one_pitch_pair_first_in_first_out():
    # a second strike before the first is released: the first note-off ends the oldest note
    track = [on(60, vel=100), on(60, 480, vel=50), off(60, 480), off(60, 480)]
    score, report = read_midi(midi_bytes(track))
    assert [(n.start, n.duration, n.velocity) for n in score.notes] == [(0, 960, 100), (480, 960, 50)]
    assert has(report, "first in, first out")
    # the common "new note-on, then the old note's note-off at the same tick" keeps both notes whole
    track = [on(64), on(64, 480), off(64), off(64, 480)]
    score, _ = read_midi(midi_bytes(track))
    assert spans(score) == [(0, 480, 64), (480, 480, 64)]


def test_duplicate_note_on_at_the_same_tick_sounds_once():
    track = [on(60), on(60), off(60, 480), on(60), off(60, 480), off(60)]
    score, report = read_midi(midi_bytes(track))
    assert spans(score) == [(0, 480, 60), (480, 480, 60)]
    assert has(report, "dropped 1 duplicate")


def test_notes_never_released_close_at_the_track_end():
    track = [on(60), on(64), off(64, 480), on(67), Meta("end_of_track", time=1440)]
    score, report = read_midi(midi_bytes(track))
    assert spans(score) == [(0, 1920, 60), (0, 480, 64), (480, 1440, 67)]
    assert has(report, "closed 2 notes never released") and report.altered


def test_zero_length_notes_get_the_minimum_length():
    track = [on(60), off(60), on(62, 480), off(62, 0),
             off(64, 480), on(64)]  # a writer that sorts note-offs first puts the off before the on
    score, report = read_midi(midi_bytes(track, ))
    assert spans(score) == [(0, MIN_NOTE_TICKS, 60), (480, MIN_NOTE_TICKS, 62), (960, MIN_NOTE_TICKS, 64)]
    assert has(report, "3 zero-length notes") and not has(report, "never released")


def test_all_notes_off_controller_ends_sounding_notes():
    track = [on(60), on(64), M("control_change", control=123, value=0, time=960), on(67), off(67, 480)]
    score, _ = read_midi(midi_bytes(track))
    assert spans(score) == [(0, 960, 60), (0, 960, 64), (960, 480, 67)]


# --- sustain pedal -----------------------------------------------------------------------------------------
def test_sustain_pedal_is_folded_into_durations():
    cc = lambda value, time=0, ch=0: M("control_change", control=64, value=value, channel=ch, time=time)  # noqa
    track = [cc(127), on(48), off(48, 240),  # released at 240 under the pedal: held until it lifts at 1920
             on(60, 240), off(60, 240),  # 480-720, struck again at 1440 under the pedal: cut there
             on(60, 720), off(60, 240),  # 1440-1680: held until 1920
             cc(0, 240),  # pedal up at 1920
             on(72), off(72, 240),  # after the pedal: unchanged
             on(36, ch=9), off(36, 60, ch=9)]  # drums ignore the pedal
    score, report = read_midi(midi_bytes(track))
    assert spans(score, drum=False) == [(0, 1920, 48), (480, 960, 60), (1440, 480, 60), (1920, 240, 72)]
    assert spans(score, drum=True) == [(2160, 60, 36)]
    assert has(report, "sustain pedal", "3 notes lengthened")


# --- tempo, meter, time base ------------------------------------------------------------------------------
def test_tempo_and_meter_changes_mid_piece_at_another_resolution():
    conductor = [Meta("set_tempo", tempo=500000), Meta("time_signature", numerator=3, denominator=4),
                 Meta("set_tempo", tempo=400000, time=288),  # beat 3 at 96 ticks per beat
                 Meta("time_signature", numerator=7, denominator=8, time=0),  # bar 2 starts at beat 3
                 Meta("set_tempo", tempo=1000000, time=336)]  # after one 7/8 bar
    notes = [on(60), off(60, 48), on(62, 240), off(62, 49)]
    score, report = read_midi(midi_bytes(conductor, notes, tpq=96))
    assert [(t.tick, t.bpm) for t in score.tempos] == [(0, 120.0), (1440, 150.0), (3120, 60.0)]
    assert [(m.tick, m.numerator, m.denominator) for m in score.time_signatures] == [(0, 3, 4), (1440, 7, 8)]
    assert spans(score) == [(0, 240, 60), (1440, 245, 62)]  # 49 file ticks = 245 ticks, rounded
    assert not report.altered


def test_meter_change_mid_bar_moves_to_the_next_bar_line():
    conductor = [Meta("time_signature", numerator=4, denominator=4),
                 Meta("time_signature", numerator=3, denominator=4, time=2400)]  # 1.25 bars in
    score, report = read_midi(midi_bytes(conductor, [on(60), off(60, 480)]))
    assert [(m.tick, m.numerator) for m in score.time_signatures] == [(0, 4), (3840, 3)]
    assert has(report, "moved 1 time signature")


def test_smpte_division_is_converted_to_beats():
    division = -(25 << 8) | 40  # 25 frames per second x 40 ticks per frame = 1000 ticks per second
    data = midi_bytes([Meta("set_tempo", tempo=250000), on(60, 1000), off(60, 500)], tpq=division)
    assert struct.unpack(">h", data[12:14])[0] == division
    score, report = read_midi(data)
    assert spans(score) == [(960, 480, 60)]  # 1 s and 0.5 s at 120 BPM
    assert [t.bpm for t in score.tempos] == [120.0]
    assert has(report, "SMPTE division converted at 25 fps x 40")


def test_tempo_0_is_ignored_and_reported():
    conductor = [Meta("set_tempo", tempo=0), Meta("set_tempo", tempo=750000, time=960)]
    score, report = read_midi(midi_bytes(conductor, [on(60), off(60, 480)]))
    assert [(t.tick, t.bpm) for t in score.tempos] == [(0, 120.0), (960, 80.0)]
    assert has(report, "ignored 1 tempo events of 0")


def test_absurd_time_signature_is_ignored():
    bad = mido.UnknownMetaMessage(0x58, data=[4, 40, 24, 8])  # denominator 2**40
    score, report = read_midi(midi_bytes([bad, on(60), off(60, 480)]))
    assert [(m.numerator, m.denominator) for m in score.time_signatures] == [(4, 4)]
    assert has(report, "absurd time signatures")


def test_ticks_per_beat_0_is_an_error():
    data = bytearray(midi_bytes([on(60), off(60, 480)]))
    data[12:14] = b"\x00\x00"
    with pytest.raises(MidiReadError, match="ticks per beat is 0"):
        read_midi(bytes(data))


def test_huge_delta_times_cap_the_piece_length():
    track = [on(60), off(60, 480), on(62, 0x0FFFFFFF), off(62, 480)]
    score, report = read_midi(midi_bytes(track, tpq=96))
    assert spans(score) == [(0, 2400, 60)]  # 480 ticks at 96 per beat
    assert has(report, f"cut the piece at beat {MAX_BEATS}")
    assert score.end_tick <= MAX_BEATS * TICKS_PER_BEAT


# --- floods, size limits ---------------------------------------------------------------------------------
def test_controller_flood_is_ignored_and_counted():
    flood = [M("control_change", control=7 + i % 3, value=i % 128) for i in range(12000)]
    bends = [M("pitchwheel", pitch=100 * i) for i in range(30)]
    track = [on(60)] + flood + bends + [M("aftertouch", value=3), off(60, 480)]
    score, report = read_midi(midi_bytes(track))
    assert spans(score) == [(0, 480, 60)]
    assert has(report, "dropped 12000 controller events") and has(report, "dropped 29 pitch bends")
    assert has(report, "1 aftertouch")  # the centre pitch bend (0) only resets: not counted


def test_files_over_the_byte_limit_are_refused(tmp_path):
    path = tmp_path / "huge.mid"
    with open(path, "wb") as fh:
        fh.write(midi_bytes([on(60), off(60, 480)]))
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing big is written
    with pytest.raises(MidiReadError, match="over the 16.0 MB limit"):
        read_midi(path)
    with pytest.raises(MidiReadError, match="limit"):
        read_midi(midi_bytes([on(60), off(60, 480)]), max_bytes=20)


def test_notes_over_the_note_limit_are_dropped_and_reported():
    track = [m for i in range(300) for m in (on(40 + i % 40, 0), off(40 + i % 40, 10))]
    score, report = read_midi(midi_bytes(track, tpq=480), max_notes=100)
    assert len(score.notes) == 100 and score.notes[-1].start == 99 * 10
    assert has(report, "kept the first 100 notes, dropped 200")


# --- broken bytes --------------------------------------------------------------------------------------------
def test_random_bytes_raise_midi_read_error():
    rng = random.Random(7)
    for _ in range(200):
        with pytest.raises(MidiReadError):
            read_midi(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))))


def test_mutated_files_raise_midi_read_error_or_read():
    good = midi_bytes([Meta("set_tempo", tempo=500000), Meta("key_signature", key="C")],
                      [M("program_change", program=5), on(60), on(64, 10), off(60, 470), off(64, 10)] * 20)
    rng = random.Random(11)
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(14, len(data))] = rng.randrange(256)  # keep the header, corrupt the rest
        try:
            score, report = read_midi(bytes(data))
        except MidiReadError as e:
            assert "\n" not in str(e) and str(e)
        else:
            assert all(0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 and n.duration >= 1 for n in score.notes)


def test_truncated_files_raise_midi_read_error():
    data = midi_bytes([Meta("set_tempo", tempo=500000)], [on(60), off(60, 480), on(62), off(62, 480)])
    second_track_start = data.index(b"MTrk", 20)
    for cut in list(range(0, 22)) + list(range(second_track_start + 1, len(data))):
        with pytest.raises(MidiReadError):
            read_midi(data[:cut])


def test_bad_meta_events_do_not_lose_the_file():
    bad_key = mido.UnknownMetaMessage(0x59, data=[20, 5])  # mido.MidiFile cannot read this key signature
    short_tempo = mido.UnknownMetaMessage(0x51, data=[1])
    score, report = read_midi(midi_bytes([bad_key, short_tempo, on(60), off(60, 480)]))
    assert spans(score) == [(0, 480, 60)]
    assert has(report, "malformed tempo")


def test_unknown_chunks_and_riff_wrapper_are_skipped():
    smf = midi_bytes([on(60), off(60, 480)])
    with_chunk = smf[:14] + b"XFIH" + struct.pack(">L", 3) + b"abc" + smf[14:]
    score, report = read_midi(with_chunk)
    assert spans(score) == [(0, 480, 60)] and has(report, "unknown 'XFIH' chunk")
    riff = b"RIFF" + struct.pack("<L", len(smf) + 12) + b"RMID" + b"data" + struct.pack("<L", len(smf)) + smf
    assert spans(read_midi(riff)[0]) == [(0, 480, 60)]


def test_missing_file_is_a_read_error(tmp_path):
    with pytest.raises(MidiReadError, match="cannot read"):
        read_midi(tmp_path / "nope.mid")


# --- issue 12: stray note-offs, wrong chunk lengths ------------------------------------------------------
def test_a_note_off_with_nothing_sounding_never_cuts_the_next_note():
    # "off, then on" at one tick where the off finds nothing sounding (a notation export's repeated note
    # whose first off came twice): the note that follows is a real three-beat note, not a blip
    track = [on(60), off(60, 480), off(60), on(60), off(60, 1440), on(62), off(62, 480)]
    score, report = read_midi(midi_bytes(track))
    assert spans(score) == [(0, 480, 60), (480, 1440, 60), (1920, 480, 62)]
    assert has(report, "ignored 1 note-offs without a note-on") and not report.altered
    # the same at the track's start, and for a key struck again later
    track = [off(64), on(64), off(64, 1440), on(64, 480), off(64, 480)]
    assert spans(read_midi(midi_bytes(track))[0]) == [(0, 1440, 64), (1920, 480, 64)]


def test_zero_length_grace_notes_written_off_first_stay_zero_length_in_the_document():
    # music21 writes a grace note as "off, then on" at one tick, a run of them likewise, and sometimes the
    # main note on the same key at the same tick; none of these is ever released by a later note-off
    track = [off(67), on(67), off(67, 480), on(67), on(67), off(67, 480), off(69), on(69), on(69, 480)]
    score, report = read_midi(midi_bytes(track))
    held = sorted((n.start, n.duration, n.pitch) for t in score.tracks() for n in t.notes)
    assert held == [(0, 0, 67), (480, 0, 67), (480, 480, 67), (960, 0, 69), (1440, 0, 69)]
    assert spans(score) == [(0, MIN_NOTE_TICKS, 67), (480, MIN_NOTE_TICKS, 67), (480, 480, 67),
                            (960, MIN_NOTE_TICKS, 69), (1440, MIN_NOTE_TICKS, 69)]


def _with_chunk_length(data: bytes, track: int, length: int) -> bytes:
    """`data` with the declared length of its `track`-th MTrk chunk (1-based) replaced."""
    pos = -1
    for _ in range(track):
        pos = data.index(b"MTrk", pos + 1)
    return data[:pos + 4] + struct.pack(">L", length) + data[pos + 8:]


def test_a_chunk_length_past_the_end_of_the_file_reads_every_track():
    data = midi_bytes([Meta("track_name", name="melody"), on(60), off(60, 480)],
                      [Meta("track_name", name="bass"), on(36), off(36, 960)])
    for broken in (_with_chunk_length(data, 1, 0x7FFFFFF), _with_chunk_length(data, 2, 0x7FFFFFF)):
        score, report = read_midi(broken)
        assert [(t.name, [(n.start, n.duration, n.pitch) for n in t.notes]) for t in score.tracks()] == \
            [("melody", [(0, 480, 60)]), ("bass", [(0, 960, 36)])]
        assert has(report, "chunk length runs past the end of the file")
        assert not has(report, "announces")


def test_a_chunk_length_over_the_next_track_reads_the_next_track():
    data = midi_bytes([on(60), off(60, 480)], [on(36), off(36, 960)], [on(48), off(48, 240)])
    first_length = struct.unpack(">L", data[data.index(b"MTrk") + 4:][:4])[0]
    score, report = read_midi(_with_chunk_length(data, 1, first_length + 20))
    assert [[(n.start, n.duration, n.pitch) for n in t.notes] for t in score.tracks()] == \
        [[(0, 480, 60)], [(0, 960, 36)], [(0, 240, 48)]]
    assert has(report, "track 1", "over the next track") and not has(report, "announces")


def test_a_track_cut_before_its_end_is_still_an_error():
    data = midi_bytes([on(60), off(60, 480)], [on(36), off(36, 960)])
    with pytest.raises(MidiReadError, match="track 2 is cut off"):
        read_midi(_with_chunk_length(data, 2, 0x7FFFFFF)[:-3])

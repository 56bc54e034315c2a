"""Scheduler, player, capture and clock logic, without a MIDI system (a recording port object)."""
from __future__ import annotations

import io
import random
import threading
import time

import mido
import pytest

from core.live import (ChannelMap, ClockFollower, MidiCapture, Player, PortListing, Scheduler, Timeline,
                       list_ports, sleep_until)
from core.midi import read_midi, score_to_bytes, write_midi
from core.score import DRUM_CHANNEL, TICKS_PER_BEAT, Event, Note, Score, TempoChange, Track
from tests.midi_checks import sounding


class RecordingPort:
    """Stands in for a mido output: keeps (perf_counter, message) for each send."""

    def __init__(self):
        self.messages: list[tuple[float, mido.Message]] = []
        self.lock = threading.Lock()

    def send(self, msg):
        with self.lock:
            self.messages.append((time.perf_counter(), msg))

    def types(self):
        return [m.type for _, m in self.messages]


def test_scheduler_sends_in_deadline_order_on_time():
    port = RecordingPort()
    with Scheduler(port) as sched:
        t0 = time.perf_counter() + 0.05
        order = [5, 1, 4, 0, 3, 2]
        for i in order:  # scheduled out of order
            sched.send_at(t0 + i * 0.01, mido.Message("control_change", control=20, value=i))
        assert sched.wait_idle(2)
    timed = [(t, m) for t, m in port.messages if m.control == 20]  # close() then adds the release CCs
    assert [m.value for _, m in timed] == sorted(order)
    for (t, m) in timed:
        assert 0 <= t - (t0 + m.value * 0.01) < 0.002  # sleep then spin: well under a millisecond here
    assert sched.max_lateness < 0.002


def test_the_scheduler_keeps_a_send_history_only_when_asked():
    """Every send's lateness and message are a benchmark's (and a test's) business, not every run's."""
    for history, kept in ((0, 0), (4, 4)):
        with Scheduler(RecordingPort(), history=history) as sched:
            t0 = time.perf_counter() + 0.01
            for i in range(10):
                sched.send_at(t0 + i * 0.001, mido.Message("control_change", control=20, value=i))
            assert sched.wait_idle(2)
            assert len(sched.lateness) == len(sched.sent) == kept
            assert 0 < sched.max_lateness < 1


def test_stop_releases_held_notes_then_pedal_and_all_notes_off():
    port = RecordingPort()
    with Scheduler(port) as sched:
        t0 = time.perf_counter() + 0.02
        sched.note(0, 60, 90, t0, t0 + 10)
        sched.note(0, 64, 90, t0, t0 + 10)
        sched.note(DRUM_CHANNEL, 36, 100, t0, t0 + 10)
        sched.note(0, 67, 90, t0 + 5, t0 + 10)  # never starts
        time.sleep(0.06)
        assert sched.sounding == 3
        sched.stop()
        assert sched.pending == 0 and sched.sounding == 0
    msgs = [m for _, m in port.messages]
    assert sum(m.type == "note_on" for m in msgs) == 3
    assert sounding(port.messages) == {}
    tail = msgs[-4:]  # the release ends with pedal-up and All Notes Off on both used channels
    assert {(m.channel, m.control, m.value) for m in tail} == {(0, 64, 0), (0, 123, 0), (9, 64, 0), (9, 123, 0)}
    last_off = max(i for i, m in enumerate(msgs) if m.type == "note_off")
    assert all(m.type == "control_change" for m in msgs[last_off + 1:])


def test_retriggered_key_is_held_by_the_newer_note():
    port = RecordingPort()
    with Scheduler(port) as sched:
        t0 = time.perf_counter() + 0.02
        sched.note(0, 60, 80, t0, t0 + 0.10)
        sched.note(0, 60, 81, t0 + 0.05, t0 + 0.15)  # overlaps the first on the same key
        time.sleep(0.12)
        assert sched.sounding == 1  # the first note's note-off did not cut the second
        assert sched.wait_idle(1)
    events = [(m.type, m.velocity) for _, m in port.messages if m.type != "control_change"]
    assert events == [("note_on", 80), ("note_off", 0), ("note_on", 81), ("note_off", 0)]


def test_timeline_follows_tempo_changes():
    score = Score([], [TempoChange(0, 120), TempoChange(4 * TICKS_PER_BEAT, 60)])
    tl = Timeline(score, origin_tick=2 * TICKS_PER_BEAT, origin_time=100.0)
    assert tl.time_at(2 * TICKS_PER_BEAT) == pytest.approx(100.0)
    assert tl.time_at(4 * TICKS_PER_BEAT) == pytest.approx(101.0)  # two beats at 120
    assert tl.time_at(5 * TICKS_PER_BEAT) == pytest.approx(102.0)  # one beat at 60
    assert tl.tick_at(101.5) == pytest.approx(4.5 * TICKS_PER_BEAT)


def test_player_plays_a_stream_with_program_changes_and_channels():
    port = RecordingPort()
    score = Score([], [TempoChange(0, 240)])  # a beat is 0.25 s
    half = TICKS_PER_BEAT // 2
    notes = [Note(960 + i * half, half, 60 + i, 70 + i, program=40) for i in range(4)]
    notes.append(Note(960, half, 38, 100, drum=True))

    def stream():  # a generator that yields like the model does: one note at a time
        for n in sorted(notes, key=lambda n: n.start):
            time.sleep(0.005)
            yield n

    with Scheduler(port) as sched:
        player = Player(sched).play(stream(), score, start_tick=960, lookahead=0.03)
        assert player.wait(5)
    msgs = [m for _, m in port.messages]
    assert msgs[0].type == "program_change" and msgs[0].program == 40 and msgs[0].channel == 0
    ons = [(t, m) for t, m in port.messages if m.type == "note_on"]
    assert [m.note for _, m in ons if m.channel == 0] == [60, 61, 62, 63]
    assert [m.velocity for _, m in ons if m.channel == 0] == [70, 71, 72, 73]
    assert [m.note for _, m in ons if m.channel == DRUM_CHANNEL] == [38]
    piano = [t for t, m in ons if m.channel == 0]
    for a, b in zip(piano, piano[1:]):
        assert b - a == pytest.approx(0.125, abs=0.002)  # half a beat at 240 BPM
    assert player.underruns == 0
    assert sounding(port.messages) == {}


def test_player_stop_mid_stream_leaves_nothing_hanging():
    port = RecordingPort()
    score = Score([], [TempoChange(0, 120)])
    notes = [Note(i * 240, 4 * TICKS_PER_BEAT, 48 + i, 90) for i in range(20)]
    with Scheduler(port) as sched:
        player = Player(sched).play(iter(notes), score, lookahead=0.01)
        time.sleep(0.4)
        player.stop()
        assert sched.idle()
    assert sum(m.type == "note_on" for _, m in port.messages) >= 2
    assert sounding(port.messages) == {}
    assert port.messages[-1][1].control == 123


def test_channel_map_keeps_drums_on_channel_ten():
    cm = ChannelMap()
    assert cm.channel(Note(0, 1, 60, program=0)) == (0, True)
    assert cm.channel(Note(0, 1, 36, drum=True)) == (DRUM_CHANNEL, False)
    assert cm.channel(Note(0, 1, 60, program=33)) == (1, True)
    assert cm.channel(Note(5, 1, 62, program=0)) == (0, False)
    channels = {cm.channel(Note(0, 1, 60, program=p))[0] for p in range(40, 60)}
    assert DRUM_CHANNEL not in channels


def _programs_heard(messages) -> list[tuple[int, int, int | None]]:
    """(pitch, channel, program in force on that channel) of every note-on, sorted."""
    program, heard = [0] * 16, []
    for m in messages:
        if m.type == "program_change":
            program[m.channel] = m.program
        elif m.type == "note_on" and m.velocity > 0:
            heard.append((m.note, m.channel, None if m.channel == DRUM_CHANNEL else program[m.channel]))
    return sorted(heard)


def test_a_piece_of_17_instruments_plays_on_the_channels_and_programs_of_its_file():
    """Past 15 pitched instruments channels are shared; live output shares them as the file does, and switches
    a shared channel's program back and forth as the file does (the sounds stay right)."""
    notes = [Note(i * 40 + k * 480, 200, 40 + i, 80, program=3 + 7 * i) for i in range(17) for k in range(4)]
    notes += [Note(k * 480, 100, 36, 100, drum=True) for k in range(4)]
    piece = Score(notes, [TempoChange(0, 300)])
    written = _programs_heard(mido.merge_tracks(mido.MidiFile(file=io.BytesIO(score_to_bytes(piece))).tracks))
    port = RecordingPort()
    with Scheduler(port) as sched:
        assert Player(sched, ChannelMap(piece)).play(piece.notes, piece, lookahead=0.02).wait(20)
    played = _programs_heard(m for _, m in port.messages)
    assert len({ch for _, ch, _ in written}) == 16  # every channel in use, so some are shared
    assert played == written


def test_a_continuation_plays_on_its_instruments_channel_in_the_prompt_file(tmp_path):
    """rwkv-music live plays the model's notes on the channels they have in the file it writes."""
    prompt = Score(tracks=[Track("Lead", 5, 0, notes=[Note(0, 480, 60)]),
                           Track("Bass", 2, 33, notes=[Note(0, 480, 36, program=33)],
                                 events=[Event(0, bytes((0xC2, 33)))])])
    write_midi(prompt, tmp_path / "prompt.mid")
    prompt, _ = read_midi(tmp_path / "prompt.mid")
    continuation = [Note(1920, 240, 72), Note(1920, 240, 40, program=33), Note(2160, 240, 38, drum=True)]
    port = RecordingPort()
    with Scheduler(port) as sched:
        assert Player(sched).play(iter(continuation), prompt, lookahead=0.02).wait(10)
    played = _programs_heard(m for _, m in port.messages)
    assert played == [(38, DRUM_CHANNEL, None), (40, 2, 33), (72, 5, 0)]


def test_capture_pairs_notes_and_converts_to_ticks():
    cap = MidiCapture()
    t0 = 50.0
    cap(mido.Message("note_on", note=60, velocity=90), t0)
    cap(mido.Message("note_on", note=64, velocity=70), t0 + 0.25)
    cap(mido.Message("note_on", note=60, velocity=0), t0 + 0.5)  # velocity 0 is a note-off
    cap(mido.Message("note_off", note=64), t0 + 0.75)
    cap(mido.Message("note_on", channel=9, note=36, velocity=100), t0 + 1.0)
    cap(mido.Message("note_on", note=67, velocity=60), t0 + 1.5)  # still held
    assert cap.held == 2
    cap(mido.Message("note_off", channel=9, note=36), t0 + 1.1)
    score = cap.to_score(bpm=120, until=t0 + 2.0)
    got = [(n.start, n.duration, n.pitch, n.velocity, n.drum) for n in score.notes]
    assert got == [(0, 480, 60, 90, False), (240, 480, 64, 70, False), (960, 96, 36, 100, True),
                   (1440, 480, 67, 60, False)]
    assert score.tempos[0].bpm == 120


def test_capture_pairs_what_was_played_as_the_midi_reader_pairs_a_file_of_it():
    """One note-pairing rule for files and for a player on a MIDI input (core.midi's)."""
    played = [(0.0, mido.Message("note_on", note=60, velocity=90)),
              (0.1, mido.Message("note_on", note=60, velocity=80)),  # struck again while held: first in, first out
              (0.2, mido.Message("note_off", note=60)), (0.3, mido.Message("note_off", note=60)),
              (0.5, mido.Message("note_on", note=62, velocity=70)),
              (0.5, mido.Message("note_on", note=62, velocity=70)),  # twice at one instant: it sounds once
              (0.6, mido.Message("note_off", note=62)), (0.7, mido.Message("note_off", note=62)),
              (1.0, mido.Message("note_on", note=64, velocity=60)),
              (1.25, mido.Message("control_change", control=123, value=0)),  # all notes off ends it
              (1.5, mido.Message("program_change", channel=1, program=40)),
              (1.5, mido.Message("note_on", channel=1, note=67, velocity=50)),
              (2.0, mido.Message("note_off", channel=1, note=67))]
    cap = MidiCapture()
    for t, m in played:
        cap(m, 50.0 + t)
    captured = cap.to_score(bpm=120, until=52.5)
    per_second = 2 * TICKS_PER_BEAT  # at 120 BPM
    track = mido.MidiTrack()
    for (t, m), (before, _) in zip(played, [(0.0, None)] + played):
        track.append(m.copy(time=round((t - before) * per_second)))
    file = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track]).save(file=file)
    read, _ = read_midi(file.getvalue())

    def spans(score):
        return [(n.start, n.duration, n.pitch, n.velocity, n.program) for n in score.notes]

    assert spans(captured) == spans(read)
    assert spans(captured) == [(0, 192, 60, 90, 0), (96, 192, 60, 80, 0), (480, 96, 62, 70, 0), (960, 240, 64, 60, 0),
                               (1440, 480, 67, 50, 40)]


def test_clock_follower_fits_tempo_through_jitter():
    rng = random.Random(1)
    follower = ClockFollower()
    period = 60 / (120 * 24)
    follower(mido.Message("start"), 0.0)
    for i in range(96):
        follower(mido.Message("clock"), 1.0 + i * period + rng.uniform(0, 64 / 48000))  # one JACK period of jitter
    assert follower.bpm == pytest.approx(120, abs=0.5)
    assert follower.beat_at(1.0 + 95 * period) == pytest.approx(95 / 24, abs=0.05)
    follower(mido.Message("stop"), 5.0)
    assert not follower.running
    follower(mido.Message("songpos", pos=16), 5.1)  # sixteenths: bar 2 in 4/4
    follower(mido.Message("continue"), 5.2)
    follower(mido.Message("clock"), 5.3)
    assert follower.beat_at(5.3) == pytest.approx(4.0)


def test_list_ports_never_raises():
    listing = list_ports()
    assert isinstance(listing, PortListing)
    assert listing.inputs or listing.outputs or listing.reason  # either ports or a reason why not
    bogus = list_ports("mido.backends.no_such_backend")
    assert bogus.inputs == [] and bogus.outputs == [] and "backend" in bogus.reason


def test_sleep_until_is_interruptible_and_precise():
    deadline = time.perf_counter() + 0.02
    assert sleep_until(deadline)
    assert 0 <= time.perf_counter() - deadline < 0.005  # spins the last ms; a loaded machine may preempt it
    stop = threading.Event()
    threading.Timer(0.01, stop.set).start()
    t = time.perf_counter()
    assert not sleep_until(t + 5, stop) and stop.is_set()  # it returned because it was stopped, not before
    assert time.perf_counter() - t < 1


def test_cli_ports_lists_or_explains(capsys):
    """`rwkv-music ports` prints every port that list_ports finds ("none" for an empty list) and, where a MIDI
    system cannot be reached, why."""
    from core.cli import main
    from core.live import default_midi_api

    assert main(["ports"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listing = list_ports(default_midi_api())

    def section(title: str, names: list[str]) -> list[str]:
        return [f"{title}:"] + [f"  {name}" for name in names] if names else [f"{title}: none"]

    assert lines[0].startswith("MIDI system: ")
    assert lines[1:] == (section("inputs", listing.inputs) + section("outputs", listing.outputs)
                         + ([f"note: {listing.reason}"] if listing.reason else []))
    assert listing.inputs or listing.outputs or listing.reason  # ports, or why there are none


def test_scheduler_process_reports_a_port_it_cannot_open():
    from core.live import PortError, SchedulerProcess

    with pytest.raises(PortError):
        SchedulerProcess("no such port anywhere").start()


def test_a_scheduler_process_start_in_flight_can_be_cancelled_from_another_thread():
    """The GUI starts the synth's process on a worker thread and may give it up (another output chosen, the
    app closing) while the child has not answered: cancel() ends the child at once, start() raises, and no
    process is left. The child is real and slowed (its config unpickles slowly), not a mock."""
    from core.live import PortError, SchedulerProcess
    from core.live.process import CANCELLED
    from core.live.timing import wait_until
    from tests.slow_start import SlowStartConfig

    delay = 20.0
    sched = SchedulerProcess(synth=SlowStartConfig(start_delay=delay))
    raised: list[Exception] = []

    def run():
        try:
            sched.start()
        except PortError as e:
            raised.append(e)

    t0 = time.perf_counter()
    thread = threading.Thread(target=run)
    thread.start()
    assert wait_until(lambda: sched._process.pid is not None, 10.0)  # the child is running, not answering
    time.sleep(0.3)
    assert thread.is_alive()  # start() waits for its answer
    sched.cancel()
    thread.join(10.0)
    elapsed = time.perf_counter() - t0
    assert not thread.is_alive() and elapsed < delay / 4, elapsed  # it did not wait for the handshake
    assert [str(e) for e in raised] == [CANCELLED]
    assert not sched._process.is_alive() and sched._process.exitcode is not None  # ended and reaped
    sched.close()  # harmless afterwards

    never = SchedulerProcess(synth=SlowStartConfig(start_delay=delay))
    never.cancel()  # before start(): nothing is spawned
    with pytest.raises(PortError, match=CANCELLED):
        never.start()
    assert never._process.pid is None


def test_jam_answers_on_a_controller_on_the_followed_clock_bar_grid(tiny_checkpoint):
    """Trigger by controller; with a DAW clock followed, the phrase (and so the answer) sits on its bars."""
    from core.generate import Generator, SamplingConfig
    from core.live import JamConfig, JamSession

    port = RecordingPort()
    clock = ClockFollower()
    now = time.perf_counter()
    bpm, tick = 120.0, 60 / (120 * 24)
    clock_start = now - 3.0  # the DAW started 3 s (six beats) ago
    clock(mido.Message("start"), clock_start - 0.001)
    for i in range(int(3.0 / tick) + 1):
        clock(mido.Message("clock"), clock_start + i * tick)
    config = JamConfig(bars=1, pause_beats=100, trigger_cc=20, sampling=SamplingConfig(seed=9))
    with Scheduler(port) as sched:
        jam = JamSession(Generator.load(tiny_checkpoint), sched, config, clock=clock).start()
        try:
            first = now - 1.2  # the player's phrase began 2.4 beats ago (beat 3.6 of the song: inside bar 1)
            for k, pitch in enumerate((60, 62, 64)):
                jam.on_message(mido.Message("note_on", note=pitch, velocity=90), first + k * 0.3)
                jam.on_message(mido.Message("note_off", note=pitch), first + k * 0.3 + 0.2)
            assert jam.answers == 0  # no pause long enough: only the controller can trigger
            jam.on_message(mido.Message("control_change", control=20, value=127))
            deadline = time.perf_counter() + 10
            while jam.answers == 0 and time.perf_counter() < deadline:
                time.sleep(0.005)
            assert jam.answers == 1 and jam.state == "answering"
            origin = jam._player.timeline.origin_time
            bar_seconds = 4 * 60 / bpm
            beats_from_clock_start = (origin - clock_start) / (60 / bpm)
            assert beats_from_clock_start == pytest.approx(round(beats_from_clock_start / 4) * 4, abs=0.05)
            assert jam.last_stream.start_tick % (4 * TICKS_PER_BEAT) == 0
            assert origin + jam.last_stream.start_tick / TICKS_PER_BEAT * 60 / bpm >= jam.answer_started[0]
            while not (jam.state == "listening") and time.perf_counter() < deadline + bar_seconds:
                time.sleep(0.01)
            assert jam.state == "listening"  # the answer played out
        finally:
            jam.close()
    ons = [m for _, m in port.messages if m.type == "note_on"]
    assert ons
    assert sounding(port.messages) == {}

"""Live output through a REAL JACK MIDI loopback (a private jackd on the dummy driver, see conftest)."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import mido
import pytest

from core.live import ClockFollower, ClockSender, Player, Scheduler, midi_backend, open_output
from core.score import TICKS_PER_BEAT, Note, Score, TempoChange
from tests.midi_checks import sounding
from tools.jack import MidiRecorder

pytestmark = pytest.mark.jack


class Receiver:
    """A JACK MIDI input in this process that timestamps each message on arrival (for the clock follower)."""

    def __init__(self, backend, on_message=None):
        self.client = f"rx{uuid.uuid4().hex[:6]}"
        self.messages: list[tuple[float, mido.Message]] = []
        self.on_message = on_message
        self._lock = threading.Lock()
        self.port = backend.open_input("in", client_name=self.client, callback=self._callback)
        self.name = f"{self.client}:in"

    def _callback(self, msg):
        t = time.perf_counter()
        with self._lock:
            self.messages.append((t, msg))
        if self.on_message is not None:
            self.on_message(msg, t)

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def close(self):
        self.port.close()


@pytest.fixture
def loopback(jack_server):
    """Our output connected to a recorder in another process (as a DAW would be)."""
    backend = midi_backend("jack")
    with MidiRecorder() as rx:
        out = open_output(rx.port_name, backend=backend)
        rx.wait_connected(out)
        yield backend, out, rx
        out.close()


def ends_with_all_notes_off(messages):
    return bool(messages) and messages[-1][1].type == "control_change" and messages[-1][1].control == 123


def test_streamed_notes_arrive_in_order_within_one_period(loopback, jack_server):
    _, out, rx = loopback
    tempo = Score([], [TempoChange(0, 240)])
    sixteenth = TICKS_PER_BEAT // 4
    notes = [Note(i * sixteenth, sixteenth // 2, 48 + (i * 7) % 36, 30 + (i * 11) % 90) for i in range(24)]

    def stream():
        for n in notes:
            time.sleep(0.002)  # a generator producing tokens faster than real time
            yield n

    with Scheduler(out, history=1000) as sched:  # its sends, for the message below
        player = Player(sched).play(stream(), tempo, lookahead=0.05)
        assert player.wait(10)
    msgs = rx.wait_for(ends_with_all_notes_off)  # close() ends with the release
    got = [(t, m) for t, m in msgs if m.type == "note_on"]
    assert [(m.note, m.velocity) for _, m in got] == [(n.pitch, n.velocity) for n in notes]
    tolerance = jack_server.period_seconds + 0.002
    errors = [t - player.timeline.time_at(n.start) for (t, _), n in zip(got, notes)]
    late = [round(e * 1000, 2) for e in errors if not -0.0005 <= e <= tolerance]
    sent = [t for t, m in sched.sent if m.type == "note_on"]
    sched_ms = [round((s - player.timeline.time_at(n.start)) * 1000, 2) for s, n in zip(sent, notes)]
    assert not late, f"ms off schedule: {late} of {[round(e * 1000, 2) for e in errors]}; sent at {sched_ms}"
    assert sounding(msgs) == {}


def test_stop_during_held_notes_releases_everything(loopback):
    _, out, rx = loopback
    tempo = Score([], [TempoChange(0, 120)])
    chord = [Note(0, 8 * TICKS_PER_BEAT, p, 80) for p in (48, 55, 60, 64, 67)]
    later = [Note(4 * TICKS_PER_BEAT, TICKS_PER_BEAT, 72, 80)]
    drums = [Note(0, 8 * TICKS_PER_BEAT, 36, 110, drum=True)]
    with Scheduler(out) as sched:
        player = Player(sched).play(chord + drums + later, tempo, lookahead=0.02)
        time.sleep(0.3)
        assert sched.sounding == 6
        player.stop()
    msgs = rx.wait_for(ends_with_all_notes_off)
    assert sum(m.type == "note_on" for _, m in msgs) == 6  # the later note never started
    assert sounding(msgs) == {}
    last_off = max(i for i, (_, m) in enumerate(msgs) if m.type == "note_off")
    tail = [(m.channel, m.control, m.value) for _, m in msgs[last_off + 1:]]
    assert set(tail) == {(0, 64, 0), (0, 123, 0), (9, 64, 0), (9, 123, 0)}
    for ch in (0, 9):  # pedal up before All Notes Off on each channel
        assert tail.index((ch, 64, 0)) < tail.index((ch, 123, 0))


def test_clock_follower_tracks_a_jack_clock(jack_server):
    backend = midi_backend("jack")
    follower = ClockFollower()
    rx = Receiver(backend, on_message=follower)
    out = open_output(rx.name, backend=backend)
    time.sleep(0.05)
    sender = ClockSender(out, bpm=120).start()
    try:
        time.sleep(1.4)  # 48 ticks at 120 BPM take one second
        assert follower.running
        assert follower.bpm == pytest.approx(120, abs=0.5)
        beat = follower.beat_at()
        sent_beats = len(sender.sent_times) / 24
        assert beat == pytest.approx(sent_beats, abs=0.1)
    finally:
        sender.stop()
        time.sleep(0.05)
        out.close()
        rx.close()
    assert not follower.running


def test_model_stream_plays_live_through_jack(loopback, jack_server, tiny_checkpoint):
    """The live path end to end: the real model's note stream, scheduled as it is generated."""
    from core.generate import Generator, SamplingConfig

    _, out, rx = loopback
    gen = Generator.load(tiny_checkpoint)
    prompt = Score([Note(i * 240, 240, 60 + i % 5, 90) for i in range(8)], [TempoChange(0, 200)])
    stream = gen.stream(prompt, beats=4, sampling=SamplingConfig(seed=11))
    played = []

    def notes():
        for item in stream:
            played.append(item.note)
            yield item.note

    with Scheduler(out) as sched:
        player = Player(sched).play(notes(), prompt, start_tick=stream.start_tick, lookahead=0.1)
        assert player.wait(20)
    msgs = rx.wait_for(ends_with_all_notes_off)
    got = [(t, m) for t, m in msgs if m.type == "note_on"]
    assert played and len(got) == len(played)
    assert player.underruns == 0  # the generator stayed ahead of the music
    expected = sorted((player.timeline.time_at(n.start), n.pitch, n.velocity) for n in played)
    tolerance = jack_server.period_seconds + 0.002
    errors = [t - when for (t, _), (when, _, _) in zip(got, expected)]
    assert all(-0.0005 <= e <= tolerance for e in errors), [round(e * 1000, 2) for e in errors]
    assert sorted((m.note, m.velocity) for _, m in got) == sorted((p, v) for _, p, v in expected)
    assert sounding(msgs) == {}


def test_jam_answers_a_phrase_and_falls_silent_when_the_player_returns(jack_server, tiny_checkpoint):
    from core.generate import Generator, SamplingConfig
    from core.live import JamConfig, JamSession

    backend = midi_backend("jack")
    rx = MidiRecorder().start()
    out = open_output(rx.port_name, backend=backend)
    gen = Generator.load(tiny_checkpoint)
    config = JamConfig(bars=2, pause_beats=1, bpm=240, sampling=SamplingConfig(seed=4))
    sched = Scheduler(out).start()
    jam = JamSession(gen, sched, config).start()
    client = f"jam{uuid.uuid4().hex[:6]}"
    jam_in = backend.open_input("in", client_name=client, callback=jam.on_message)
    player = open_output(f"{client}:in", backend=backend)
    time.sleep(0.05)
    try:
        for pitch in (60, 64, 67, 72):  # a phrase of eighth notes at 240 BPM
            player.send(mido.Message("note_on", note=pitch, velocity=100))
            time.sleep(0.1)
            player.send(mido.Message("note_off", note=pitch))
            time.sleep(0.025)
        phrase_end = time.perf_counter()
        deadline = phrase_end + 10
        while not any(m.type == "note_on" for _, m in rx.messages()) and time.perf_counter() < deadline:
            time.sleep(0.005)
        answer = [(t, m) for t, m in rx.messages() if m.type == "note_on"]
        assert answer, "the jam did not answer"
        assert jam.answers == 1 and jam.state == "answering"
        assert answer[0][0] - phrase_end >= 0.25 - 0.01  # not before the one-beat pause
        assert jam.answer_started[0] - phrase_end < 0.25 + 0.05  # the pause was noticed promptly
        time.sleep(0.1)
        player.send(mido.Message("note_on", note=62, velocity=90))  # the player is back
        back = time.perf_counter()
        time.sleep(0.3)
        msgs = rx.wait_for(ends_with_all_notes_off)
        after = [(t, m) for t, m in msgs if t > back + 0.02]
        assert not [m for _, m in after if m.type == "note_on"], "kept playing over the player"
        assert sounding(msgs) == {}
        assert msgs[-1][1].type == "control_change" and msgs[-1][1].control == 123
        assert jam.state == "listening" and sched.idle()
        player.send(mido.Message("note_off", note=62))
    finally:
        jam.close()
        sched.close()
        for port in (player, jam_in, out):
            port.close()
        rx.stop()


def test_cli_live_plays_a_continuation_to_a_jack_port(jack_server, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from core.cli import main
    from core.midi import write_midi

    prompt = Score([Note(i * 240, 240, 60 + i % 7, 90) for i in range(8)], [TempoChange(0, 240)])
    src = tmp_path / "prompt.mid"
    write_midi(prompt, src)
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    with MidiRecorder() as rx:
        # seeded: the untrained model answers about one prompt in 300 with a bar of rest (measured)
        assert main(["live", "--model", tiny_checkpoint, "--prompt", str(src), "--bars", "1", "--seed", "1",
                     "--out-port", rx.port_name]) == 0
        msgs = rx.wait_for(ends_with_all_notes_off)
    assert any(m.type == "note_on" for _, m in msgs)
    assert sounding(msgs) == {}, "\n".join(f"{t:.4f} {m}" for t, m in msgs)
    assert "first note" in capsys.readouterr().out


def test_scheduler_process_keeps_time_while_this_process_holds_the_gil(jack_server):
    """The scheduler in its own process: a busy pure-Python thread here (what a generator's sampling loop
    or the GUI does) cannot delay a note, though it would delay a scheduler thread in this process."""
    from core.live import SchedulerProcess

    tempo = Score([], [TempoChange(0, 150)])
    notes = [Note(i * 120, 100, 48 + (i * 5 + j * 4) % 40, 40 + (i * 13) % 80) for i in range(32) for j in range(3)]
    stop = threading.Event()

    def busy():  # holds the GIL for its whole switch interval, again and again
        while not stop.is_set():
            sum(i * i for i in range(20000))

    hog = threading.Thread(target=busy, daemon=True)
    with MidiRecorder() as rx, SchedulerProcess(rx.port_name, backend="jack") as sched:
        hog.start()
        try:
            player = Player(sched).play(iter(notes), tempo, lookahead=0.2)
            assert player.wait(20)
        finally:
            stop.set()
            hog.join()
        lateness = sched.lateness
    msgs = rx.wait_for(ends_with_all_notes_off)
    got = [(t, m) for t, m in msgs if m.type == "note_on"]
    assert len(got) == len(notes) and player.underruns == 0
    assert sorted((m.note, m.velocity) for _, m in got) == sorted((n.pitch, n.velocity) for n in notes)
    expected = sorted(on for on, _ in player.scheduled)
    errors = [t - when for (t, _), when in zip(got, expected)]
    bad = [round(e * 1000, 2) for e in errors if not -0.0005 <= e <= jack_server.period_seconds + 0.002]
    # A thread of this process would lose the GIL to the hog for its 5 ms switch interval again and again;
    # the process keeps time but for what the OS itself may cost a process on a shared 2-core machine: a
    # rare late wake-up (one chord of 32, 4 ms late, about one run in twenty here), never a stretch of them.
    assert len(bad) <= len(errors) // 20 and max(errors) < 0.010, \
        f"{len(bad)} of {len(errors)} notes off time (ms): {bad[:20]}; sent late by up to {max(lateness) * 1000:.2f} ms"
    assert sounding(msgs) == {}


def test_scheduler_process_releases_everything_when_its_parent_goes(jack_server):
    from core.live import SchedulerProcess

    with MidiRecorder() as rx:
        sched = SchedulerProcess(rx.port_name, backend="jack").start()
        t0 = time.perf_counter() + 0.02
        for i in range(6):
            sched.note(i % 2, 60 + i, 90, t0, t0 + 30)
        time.sleep(0.2)
        assert sched.sounding == 6
        sched._conn.close()  # as if this process had crashed: the pipe closes
        msgs = rx.wait_for(lambda m: sum(x.control == 123 for _, x in m if x.type == "control_change") == 2)
        sched._process.join(5)
    assert sum(m.type == "note_on" for _, m in msgs) == 6
    assert sounding(msgs) == {}
    assert {(m.channel, m.control) for _, m in msgs if m.type == "control_change"} == {(0, 64), (0, 123), (1, 64),
                                                                                     (1, 123)}


def test_a_child_that_stops_answering_is_gone_within_the_reply_timeout(jack_server):
    """A stopped (or hung) scheduler child: a question waits at most reply_timeout, then the child counts as
    gone (as when its pipe closes), `error` says why and nothing waits on it again; once it runs again, closing
    it still releases its notes."""
    from core.live import SchedulerProcess

    timeout = 0.5
    with MidiRecorder() as rx:
        sched = SchedulerProcess(rx.port_name, backend="jack", reply_timeout=timeout).start()
        pid = sched._process.pid
        try:
            t0 = time.perf_counter() + 0.02
            sched.note(0, 60, 90, t0, t0 + 30)
            rx.wait_for(lambda m: any(x.type == "note_on" for _, x in m))
            assert sched.sounding == 1 and sched.error is None
            os.kill(pid, signal.SIGSTOP)
            asked = time.perf_counter()
            assert sched.idle()  # what a gone child answers: nothing pending, nothing sounding
            waited = time.perf_counter() - asked
            assert timeout <= waited < timeout + 1.0, waited
            assert isinstance(sched.error, TimeoutError) and f"did not answer within {timeout:g} s" in str(sched.error)
            asked = time.perf_counter()
            assert sched.sounding == 0 and sched.lateness == [] and sched.wait_idle(1)
            sched.note(0, 62, 90, t0, t0 + 30)  # sent nowhere: a child that is not reading could fill the pipe
            assert time.perf_counter() - asked < 0.1  # not asked again
        finally:
            os.kill(pid, signal.SIGCONT)
            sched.close()
        msgs = rx.wait_for(lambda m: any(x.type == "control_change" and x.control == 123 for _, x in m))
    assert sched._process.exitcode == 0  # it ended by itself, releasing what it played
    assert [m.note for _, m in msgs if m.type == "note_on" and m.velocity] == [60] and sounding(msgs) == {}


@pytest.mark.parametrize("in_child", [False, True], ids=["thread", "process"])
def test_a_cut_keeps_what_is_due_and_silences_the_muted_keys(jack_server, in_child):
    """Scheduler.cut, a new mix while playing (the child process is the built-in synth's scheduler): notes
    that start after the cut are dropped; the muted key is released at once and never struck again; a note
    of another key that sounds on ends at its own time; one due before the cut still plays."""
    from core.live import SchedulerProcess
    with MidiRecorder() as rx:
        if in_child:
            sched = SchedulerProcess(rx.port_name, backend="jack").start()
        else:
            out = open_output(rx.port_name, backend=midi_backend("jack"))
            rx.wait_connected(out)
            sched = Scheduler(out).start()
        try:
            t0 = time.perf_counter() + 0.05
            sched.note(0, 60, 90, t0, t0 + 0.6)  # kept, sounding through the cut
            sched.note(1, 48, 90, t0, t0 + 0.6)  # muted while it sounds
            sched.note(1, 50, 90, t0 + 0.5, t0 + 0.7)  # muted, still to come
            sched.note(0, 62, 90, t0 + 0.35, t0 + 0.45)  # due just before the cut
            sched.note(0, 64, 90, t0 + 0.8, t0 + 0.9)  # after the cut: the new mix schedules it again
            time.sleep(max(0.0, t0 + 0.2 - time.perf_counter()))
            sched.cut(time.perf_counter() + 0.2, [(1, 48), (1, 50)])
            rx.wait_for(lambda m: 60 in note_offs(m), timeout=5)
            time.sleep(0.4)  # past where the dropped notes were due
            msgs = rx.messages()
        finally:
            sched.close()
    on = {m.note: t for t, m in msgs if m.type == "note_on" and m.velocity > 0}
    assert sorted(on) == [48, 60, 62]  # nothing after the cut, nothing more of the muted keys
    off = note_offs(msgs)
    assert off[48] < t0 + 0.4  # released at the cut (t0 + 0.2), not at its own end (t0 + 0.6)
    assert off[60] - on[60] > 0.5  # the note that goes on is not cut: it plays its 0.6 s


def note_offs(messages) -> dict[int, float]:
    """When each pitch was last released."""
    return {m.note: t for t, m in messages
            if m.type == "note_off" or m.type == "note_on" and m.velocity == 0}

"""The built-in synth starts off the GUI thread: its child process (a fresh interpreter, the engine, the audio
device) takes a while to answer, and the window must not freeze meanwhile. The output says it is starting,
then that it is ready; Play meanwhile waits for it and then sounds (Stop cancels it); a start that fails says
why; closing the window (or choosing another output) while it starts leaves no process behind.

The child is real and its start deliberately slowed (tests/slow_start.py: its config unpickles slowly in the
child), heard through the suite's own JACK server. Times are compared as ratios, never as absolute limits."""
from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from tests.audio_checks import skip_without_synth_and_jack_client

skip_without_synth_and_jack_client()

from musicapp import transport as transport_module  # noqa: E402
from musicapp.panels.midi_panel import SYNTH  # noqa: E402
from musicapp.transport import STARTING_NOTICE, SilentPort, SynthStarting  # noqa: E402
from tests.gui.helpers import demo_score  # noqa: E402
from tests.slow_start import SlowStartConfig  # noqa: E402

pytestmark = pytest.mark.jack

READY_MS = 60_000  # generous: a loaded 2-core machine; the assertions are on order and ratios


@pytest.fixture
def slow_synth(jack_server, monkeypatch):
    """slow_synth(delay, **config): every synth the transport starts from now on answers `delay` s later."""
    monkeypatch.setenv("RWKV_MUSIC_AUDIO_BACKEND", "jack")  # no sound card here: the suite's JACK server

    def slow(delay: float, **config) -> None:
        monkeypatch.setattr(transport_module, "SynthConfig",
                            lambda **kw: SlowStartConfig(start_delay=delay, **{**kw, **config}))
    return slow


class Ticks:
    """A 10 ms QTimer on the GUI thread: the longest gap between its ticks is how long the window froze."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer
        self.times: list[float] = [time.perf_counter()]
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self.timer.start()

    def longest_gap(self) -> float:
        self.timer.stop()
        return max(b - a for a, b in zip(self.times, self.times[1:] + [time.perf_counter()]))


def test_choosing_the_synth_returns_at_once_and_the_window_keeps_running(slow_synth, make_window, qtbot):
    delay = 1.5
    slow_synth(delay)
    w = make_window(start=True)
    t = w.transport
    assert not t.synth_on and t.starting  # the start-up did not wait for the synth's process
    assert isinstance(t.port, SynthStarting) and "starting" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: t.synth_on, timeout=READY_MS)

    events: list[tuple[str, bool]] = []  # (what, on the GUI thread)
    t.portChanged.connect(lambda name: events.append((name, threading.current_thread() is threading.main_thread())))
    ticks = Ticks()
    t0 = time.perf_counter()
    w._open_output(SYNTH, reopen=True)  # as choosing an audio device in the MIDI tab does
    returned = time.perf_counter() - t0
    events.append(("returned", True))
    assert t.starting and not t.synth_on
    qtbot.waitUntil(lambda: t.synth_on, timeout=READY_MS)
    ready = time.perf_counter() - t0
    froze = ticks.longest_gap()
    assert ready > delay  # it really was slow
    assert returned < 0.2 * ready, (returned, ready)  # the GUI thread did not wait for the handshake
    assert froze < 0.25 * ready, (froze, ready)  # nor froze meanwhile
    assert events == [(SynthStarting.name, True), ("returned", True), (transport_module.SYNTH_OUTPUT, True)]
    assert "Output: Built-in synth" in w.statusBar().currentMessage() and w.messages.text == ""


def test_play_before_the_synth_is_ready_waits_for_it_then_sounds(slow_synth, make_window, capture, qtbot):
    slow_synth(1.0)
    w = make_window(start=True)
    t = w.transport
    w.doc.load_score(demo_score(bars=8, bpm=100))
    assert t.starting
    w.toggle_play()
    assert t.playing and t.position() is None  # Play is taken; the playhead rests until the synth sounds
    assert w.messages.text == STARTING_NOTICE
    w.toggle_record()  # a take's count-in needs the output now: refused, and said
    assert not w.recorder.recording and "still starting" in w.messages.text
    qtbot.wait(200)
    assert t.playing and t.starting  # the transport's timer does not drop the waiting Play
    qtbot.waitUntil(lambda: t.synth_on, timeout=READY_MS)
    assert t.playing and t.position() is not None  # it started once the synth answered
    cap = capture()
    qtbot.waitUntil(lambda: cap.level(0.05) > 0.01, timeout=5000)  # and it is heard
    w.toggle_play()
    qtbot.waitUntil(lambda: cap.level(0.2) < 1e-3, timeout=3000)  # the notes' release tails end: none hangs

    w._open_output(SYNTH, reopen=True)  # a new start: Play, then Stop, before it answers
    assert t.starting
    w.toggle_play()
    w.toggle_play()
    assert not t.playing
    qtbot.waitUntil(lambda: t.synth_on, timeout=READY_MS)
    cap.close()
    cap = capture()  # the new synth's outputs
    qtbot.wait(500)
    assert not t.playing and t.position() is None and cap.level(0.4) < 1e-3  # nothing plays that was stopped


def test_a_synth_that_cannot_start_says_why_and_play_does_not_hang(slow_synth, make_window, qtbot):
    slow_synth(0.5, device="No Such Audio Device")
    w = make_window(start=True)
    t = w.transport
    w.doc.load_score(demo_score(bars=2))
    w.toggle_play()  # waits for a synth that will not come
    assert t.playing and t.position() is None
    qtbot.waitUntil(lambda: not t.starting, timeout=READY_MS)
    assert isinstance(t.port, SilentPort) and not t.synth_on
    said = w.messages.text
    assert "The built-in synth cannot play" in said and "No Such Audio Device" in said
    assert t.playing and t.position() is not None  # silent, as with any output that failed: the playhead runs
    w.toggle_play()
    assert not t.playing
    w.toggle_play()
    assert t.playing and w.messages.text == said  # the reason stays on screen, not a vaguer "silent"


def scheduler_children() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "midi-scheduler"]


def test_closing_the_window_while_the_synth_starts_leaves_no_process(slow_synth, make_window, qtbot):
    delay = 30.0  # far longer than the test: only a cancelled start lets it end in time
    slow_synth(delay)
    w = make_window(start=True)
    t = w.transport
    first = t._starting
    qtbot.waitUntil(lambda: first.process._process.pid is not None, timeout=10_000)  # the child runs

    w._open_output(SYNTH, reopen=True)  # another choice meanwhile: the first start is given up at once
    second = t._starting
    assert second is not first and t.starting
    qtbot.waitUntil(lambda: not first.thread.is_alive(), timeout=10_000)
    assert not first.process._process.is_alive()
    qtbot.waitUntil(lambda: second.process._process.pid is not None, timeout=10_000)
    assert second.process._process.is_alive()
    w.doc.load_score(demo_score(bars=2))
    w.toggle_play()  # waiting for the synth when the window closes
    assert t.playing

    t0 = time.perf_counter()
    w.close()  # closeEvent: the start in flight is cancelled, its child ended, its thread joined
    closed = time.perf_counter() - t0
    assert closed < delay / 6, closed  # it did not wait for the handshake
    assert not second.thread.is_alive() and not second.process._process.is_alive()
    assert second.process._process.exitcode is not None  # reaped: no zombie, no orphan
    assert scheduler_children() == []
    assert not t.starting and not t.playing

"""The built-in General MIDI synth: an output like a MIDI port, and offline rendering to WAV.

The voices are TinySoundFont's (C, through the `tinysoundfont` wheel) playing a SoundFont: the bundled
public-domain GM bank (resources/GeneralMIDI.sf2) unless $RWKV_MUSIC_SOUNDFONT names another .sf2/.sf3.
Audio goes to the device through miniaudio (its wheel bundles the C library and loads the platform's
sound system at run time: PulseAudio, ALSA or JACK on Linux, CoreAudio, WASAPI).

- SynthEngine: MIDI messages in, float32 stereo out. It adds what TinySoundFont lacks: the sustain pedal
  (CC64 holds released keys), drum kits on channel 10, and a fallback for programs the font lacks.
- render_midi / write_wav: a whole file, offline, as fast as the CPU goes (`rwkv-music render`).
- SynthPort: the real-time output, with the send()/close() of a mido port so that a Scheduler drives it.
  It is opened by SchedulerProcess in its child process (SYNTH_OUTPUT as the port name): the scheduler
  thread and the audio callback there share no GIL with the model, the GUI or a fine-tune.
  Each message is stamped with its deadline (or when it is sent) and sounds `latency` seconds later, at
  its own sample inside the buffer: constant latency without a buffer's jitter.
"""
from __future__ import annotations

import io
import os
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from ..paths import resources_dir

SYNTH_OUTPUT = "Built-in synth (General MIDI)"  # its name among the outputs
SOUNDFONT_ENV = "RWKV_MUSIC_SOUNDFONT"
AUDIO_BACKEND_ENV = "RWKV_MUSIC_AUDIO_BACKEND"  # e.g. "jack": only that sound system is tried
DEFAULT_SOUNDFONT = "GeneralMIDI.sf2"
DRUM_CHANNEL = 9
DRUM_BANK = 128                      # where a SoundFont keeps its drum kits
SAMPLE_RATE = 48000
TAIL_LIMIT_S = 8.0                   # render at most this long after the last event, while it still rings
SILENCE = 1e-4                       # peak below which a tail counts as silent (-80 dBFS)


class SynthError(RuntimeError):
    """The synth could not start (no engine, no SoundFont, no audio device); the message says why."""


def soundfont_path() -> Path:
    """$RWKV_MUSIC_SOUNDFONT, else the bundled GM bank."""
    env = os.environ.get(SOUNDFONT_ENV)
    return Path(env).expanduser() if env else resources_dir() / DEFAULT_SOUNDFONT


def _tinysoundfont():
    try:
        import tinysoundfont
    except ImportError as e:
        raise SynthError("the synth engine is not installed (pip install --no-deps tinysoundfont; "
                         "`make run` does it)") from e
    return tinysoundfont


class SynthEngine:
    """A General MIDI synth: `handle(message)` then `render(frames)`. Not thread-safe: one thread uses it."""

    def __init__(self, soundfont: str | os.PathLike | None = None, sample_rate: int = SAMPLE_RATE,
                 gain_db: float = -6.0, max_voices: int = 256):
        tsf = _tinysoundfont()
        path = Path(soundfont) if soundfont is not None else soundfont_path()
        if not path.is_file():
            raise SynthError(f"no SoundFont at {path}")
        self.sample_rate = sample_rate
        self.synth = tsf.Synth(gain=gain_db, samplerate=sample_rate)
        try:
            self.sfid = self.synth.sfload(str(path), max_voices=max_voices)
        except Exception as e:  # the binding raises RuntimeError or its own exception for a bad file
            raise SynthError(f"cannot load the SoundFont {path}: {e}") from e
        self._font = self.synth.soundfonts[self.sfid]
        self.soundfont = path
        self._pedal = [False] * 16
        self._held: list[set[int]] = [set() for _ in range(16)]  # keys released while the pedal was down
        self.reset()

    def reset(self) -> None:
        """Silence everything; piano on every channel, the standard kit on channel 10."""
        self.synth.sounds_off()
        for ch in range(16):
            self.program(ch, 0)
            self._pedal[ch] = False
            self._held[ch].clear()

    def program(self, channel: int, program: int) -> None:
        drums = channel == DRUM_CHANNEL
        bank = DRUM_BANK if drums else 0
        if self._font.get_preset_name(bank, program) == "<None>":
            program = 0  # a kit or instrument the font lacks: its first one rather than silence
        self.synth.program_select(channel, self.sfid, bank, program, drums)

    def handle(self, msg: mido.Message) -> None:
        t = msg.type
        if t == "note_on" and msg.velocity > 0:
            if msg.note in self._held[msg.channel]:  # struck again under the pedal: end the held voice, or
                self._held[msg.channel].discard(msg.note)  # TinySoundFont's next note-off (oldest voice
                self.synth.noteoff(msg.channel, msg.note)  # first) would leave the new one hanging
            self.synth.noteon(msg.channel, msg.note, msg.velocity)
        elif t in ("note_off", "note_on"):
            if self._pedal[msg.channel]:
                self._held[msg.channel].add(msg.note)
            else:
                self.synth.noteoff(msg.channel, msg.note)
        elif t == "control_change":
            self._control(msg.channel, msg.control, msg.value)
        elif t == "program_change":
            self.program(msg.channel, msg.program)
        elif t == "pitchwheel":
            self.synth.pitchbend(msg.channel, msg.pitch + 8192)
        elif t == "reset":
            self.reset()

    def _control(self, ch: int, control: int, value: int) -> None:
        if control == 64:  # sustain pedal: TinySoundFont has none, so released keys are held here
            self._pedal[ch] = value >= 64
            if not self._pedal[ch]:
                for key in self._held[ch]:
                    self.synth.noteoff(ch, key)
                self._held[ch].clear()
            return
        if control in (120, 121, 123):  # all sound off, reset controllers, all notes off
            self._pedal[ch] = False
            self._held[ch].clear()
        if control in (0, 32):
            return  # bank select: GM only (channel 10 is the kits' bank)
        self.synth.control_change(ch, control, value)

    def render(self, frames: int) -> np.ndarray:
        """The next `frames` frames, (frames, 2) float32."""
        return np.frombuffer(self.synth.generate(frames), dtype=np.float32).reshape(frames, 2)


# --- offline -----------------------------------------------------------------------------------------

def midi_events(source: str | os.PathLike | bytes) -> list[tuple[float, mido.Message]]:
    """Every channel message of a MIDI file with its time in seconds (mido applies the tempo map)."""
    try:
        mid = mido.MidiFile(file=io.BytesIO(source)) if isinstance(source, bytes) else mido.MidiFile(source)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        raise SynthError(f"cannot read the MIDI file {source if not isinstance(source, bytes) else ''}: {e}") from e
    events, now = [], 0.0
    for msg in mid:  # merged tracks, delta times in seconds
        now += msg.time
        if not msg.is_meta and hasattr(msg, "channel"):
            events.append((now, msg))
    return events


def render_events(events: list[tuple[float, mido.Message]], engine: SynthEngine,
                  tail_limit: float = TAIL_LIMIT_S) -> np.ndarray:
    """Render timed messages (seconds from 0) to (frames, 2) float32, each at its exact sample, then the tail
    until it falls silent (at most `tail_limit` seconds). Peaks over 0.99 are scaled down, never clipped."""
    sr = engine.sample_rate
    end = events[-1][0] if events else 0.0
    out = np.zeros((int(end * sr) + int(tail_limit * sr) + 1, 2), np.float32)
    pos = 0
    for t, msg in sorted(events, key=lambda e: e[0]):  # stable: a file's order holds at equal times
        at = int(round(t * sr))
        if at > pos:
            out[pos:at] = engine.render(at - pos)
            pos = at
        engine.handle(msg)
    chunk = sr // 20  # the tail, 50 ms at a time, until it is silent or the limit
    limit = len(out)
    while pos < limit:
        n = min(chunk, limit - pos)
        block = engine.render(n)
        out[pos:pos + n] = block
        pos += n
        if np.abs(block).max() < SILENCE:
            break
    out = out[:pos]
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 0.99:
        out *= 0.99 / peak
    return out


def render_midi(source: str | os.PathLike | bytes, *, soundfont: str | os.PathLike | None = None,
                sample_rate: int = 44100) -> np.ndarray:
    """A MIDI file (path or bytes) as (frames, 2) float32 audio at `sample_rate`."""
    return render_events(midi_events(source), SynthEngine(soundfont, sample_rate))


def render_score(score, **kwargs) -> np.ndarray:
    """A Score as audio: written as the app saves it (core.midi: same channels and programs), then rendered."""
    from ..midi import score_to_bytes

    return render_midi(score_to_bytes(score), **kwargs)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit stereo PCM WAV, written atomically."""
    from ..atomic import atomic_write

    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


# --- real time ---------------------------------------------------------------------------------------

@dataclass
class SynthConfig:
    """What the real-time synth opens: an audio device by name (None: the system's default), the sound system
    (None: miniaudio's order, else e.g. "jack"), volume 0..1, rate, device buffer and scheduling latency."""
    device: str | None = None
    backend: str | None = None
    volume: float = 0.8
    sample_rate: int = SAMPLE_RATE
    buffer_ms: int = 5
    latency_ms: float = 8.0  # from a message's send to its sample: one buffer plus the callback's jitter
    soundfont: str | None = None


def _miniaudio():
    try:
        import miniaudio
    except ImportError as e:
        raise SynthError("audio output needs the miniaudio package (pip install miniaudio)") from e
    return miniaudio


def _backends(name: str | None):
    ma = _miniaudio()
    name = name or os.environ.get(AUDIO_BACKEND_ENV) or None
    if name is None:
        return None
    try:
        return [ma.Backend[name.upper()]]
    except KeyError:
        raise SynthError(f"unknown sound system {name!r} (one of: {', '.join(b.name.lower() for b in ma.Backend)})")


def audio_devices(backend: str | None = None) -> list[str]:
    """Names of the playback devices; [] where no sound system answers (never raises)."""
    try:
        ma = _miniaudio()
        return [d["name"] for d in ma.Devices(backends=_backends(backend)).get_playbacks()]
    except Exception:  # no sound system, or one that fails while listing: nothing to offer
        return []


class SynthPort:
    """The synth as a real-time output with a mido port's send()/close(): audio through miniaudio.

    send() only stamps and queues (any thread); the audio callback takes what is due, each message at the
    sample `latency` after its stamp, and renders. The engine is touched by the callback alone.
    `callbacks` counts buffers, `late` messages that arrived too late for their sample (played at the
    buffer's start), `gaps` callbacks that came over 1.5 buffers after the previous (a likely underrun)."""

    def __init__(self, config: SynthConfig | None = None):
        self.config = config or SynthConfig()
        self.name = SYNTH_OUTPUT
        self.engine = SynthEngine(self.config.soundfont, self.config.sample_rate)
        self.volume = self.config.volume
        self.latency = self.config.latency_ms / 1000
        self._queue: deque[tuple[float, mido.Message]] = deque()
        self._pending: list[tuple[float, mido.Message]] = []  # taken from the queue, due in a later buffer
        self._origin = 0.0  # perf_counter time of frame 0 of the stream, as estimated
        self._seen: deque[float] = deque(maxlen=64)
        self._frames = 0
        self._last_callback = 0.0
        self.callbacks = self.late = self.gaps = 0
        self.peak = 0.0
        self.device = None
        self._closed = threading.Event()
        self._open_device()

    def _open_device(self) -> None:
        ma = _miniaudio()
        cfg = self.config
        chosen = _backends(cfg.backend)
        # miniaudio settles on the first sound system whose library loads (ALSA's, even with no card):
        # where that fails, JACK is tried next, for a machine that has only a JACK server
        tries = [chosen] if chosen is not None else [None, [ma.Backend.JACK]] if os.name == "posix" else [None]
        errors = []
        for backends in tries:
            try:
                device_id = None
                if cfg.device:
                    found = [d for d in ma.Devices(backends=backends).get_playbacks() if d["name"] == cfg.device]
                    if not found:
                        raise SynthError(f"no audio device named {cfg.device!r}")
                    device_id = found[0]["id"]
                self.device = ma.PlaybackDevice(output_format=ma.SampleFormat.FLOAT32, nchannels=2,
                                                sample_rate=cfg.sample_rate, buffersize_msec=cfg.buffer_ms,
                                                device_id=device_id, backends=backends, app_name="RWKV-Music")
                stream = self._stream()
                next(stream)
                self.device.start(stream)
                self.backend = getattr(self.device, "backend", "")
                return
            except (ma.MiniaudioError, SynthError) as e:
                if self.device is not None:
                    self.device.close()
                self.device = None
                errors.append(str(e))
        raise SynthError(f"no audio output: {'; '.join(dict.fromkeys(errors))}")

    # the mido port interface, for the Scheduler
    def send(self, msg: mido.Message) -> None:
        self._queue.append((time.perf_counter(), msg))

    def send_timed(self, msg: mido.Message, deadline: float) -> None:
        """What the Scheduler calls: the message sounds `latency` after its deadline, however late the
        scheduler's thread woke (so it need not spin for the last millisecond, holding the GIL)."""
        self._queue.append((deadline, msg))

    def reset(self) -> None:
        for ch in range(16):
            self.send(mido.Message("control_change", channel=ch, control=64, value=0))
            self.send(mido.Message("control_change", channel=ch, control=123, value=0))

    def set_volume(self, volume: float) -> None:
        self.volume = min(1.0, max(0.0, float(volume)))

    def close(self) -> None:
        if self.device is not None and not self._closed.is_set():
            self._closed.set()
            self.device.close()  # stops the callback thread first: the engine is then ours

    def _stream(self):
        """miniaudio's callback: sent the number of frames wanted, yields them as float32 bytes."""
        frames = yield b""
        while True:
            try:
                block = self._fill(frames)
            except Exception:  # a bug here must not kill the stream: play silence and go on
                block = np.zeros((frames, 2), np.float32)
            frames = yield block.tobytes()

    def _fill(self, frames: int) -> np.ndarray:
        now = time.perf_counter()
        sr = self.engine.sample_rate
        # frame 0's time: the earliest estimate over the last 64 callbacks (a callback is never early, often
        # late); a window, not the minimum ever, so that a stall (an xrun skips cycles) or clock drift is
        # followed within a third of a second instead of adding its length to every later note
        self._seen.append(now - self._frames / sr)
        self._origin = min(self._seen)
        self.callbacks += 1
        if self._last_callback and now - self._last_callback > 1.5 * frames / sr:
            self.gaps += 1
        self._last_callback = now
        while self._queue:
            self._pending.append(self._queue.popleft())
        start, end = self._frames, self._frames + frames
        out = np.empty((frames, 2), np.float32)
        pos, later = 0, []
        for stamp, msg in self._pending:  # in stamp order: appended in order by one scheduler thread
            at = int(round((stamp + self.latency - self._origin) * sr)) - start
            if at >= frames:
                later.append((stamp, msg))
                continue
            if at < 0:
                self.late += 1
                at = 0
            if at > pos:
                out[pos:at] = self.engine.render(at - pos)
                pos = at
            self.engine.handle(msg)
        if pos < frames:
            out[pos:] = self.engine.render(frames - pos)
        self._pending = later
        self._frames = end
        out *= self.volume
        self.peak = max(self.peak, float(np.abs(out).max()))
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def stats(self) -> dict:
        return dict(callbacks=self.callbacks, late=self.late, gaps=self.gaps, peak=self.peak,
                    backend=str(getattr(self, "backend", "")))

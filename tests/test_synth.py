"""The built-in synth, offline: real SoundFont, real engine, audio checked by its spectrum and envelope."""
from __future__ import annotations

import wave

import mido
import numpy as np
import pytest

pytest.importorskip("tinysoundfont")

from core.live.synth import SynthEngine, SynthError, midi_events, render_events, render_midi, write_wav  # noqa: E402
from core.score import Note, Score  # noqa: E402
from tests.audio_checks import SR, pitch_of  # noqa: E402



def midi_bytes(notes, tempo_bpm=120, extra=()) -> bytes:
    """A one-track file: notes as (channel, pitch, start_s, end_s, program); `extra` as (time_s, message)."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm)))
    events = list(extra)
    programs = {}
    for ch, pitch, on, off, program in notes:
        if programs.get(ch) != program:
            programs[ch] = program
            events.append((on, mido.Message("program_change", channel=ch, program=program)))
        events.append((on, mido.Message("note_on", channel=ch, note=pitch, velocity=100)))
        events.append((off, mido.Message("note_off", channel=ch, note=pitch)))
    events.sort(key=lambda e: (e[0], e[1].type == "note_on"))
    ticks_per_s = 480 * tempo_bpm / 60
    last = 0
    for t, msg in events:
        tick = round(t * ticks_per_s)
        track.append(msg.copy(time=tick - last))
        last = tick
    import io
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def onset_near(audio: np.ndarray, when: float, hop: float = 0.001) -> float:
    """Where the 1 ms peak envelope first rises clearly above the level just before `when` (what still
    rings of earlier notes), searching 30 ms before to 50 ms after it."""
    n = int(hop * SR)
    env = np.abs(audio).max(axis=1)[: len(audio) // n * n].reshape(-1, n).max(axis=1)
    before = env[int((when - 0.06) / hop):int((when - 0.03) / hop)].max()
    lo, hi = int((when - 0.03) / hop), int((when + 0.05) / hop)
    rising = np.nonzero(env[lo:hi] > 2 * before + 0.002)[0]
    return (lo + rising[0]) * hop if len(rising) else float("nan")


def test_known_notes_pitch_onsets_silence_no_clipping():
    # A4, then E5 and A5 on a flute, apart, then a loud chord: pitches, onsets, end and headroom
    notes = [(0, 69, 0.5, 1.0, 0), (1, 76, 1.5, 2.0, 73), (1, 81, 2.5, 3.0, 73)]
    notes += [(2, p, 3.5, 4.0, 48) for p in (48, 52, 55, 60, 64, 67, 72)]
    audio = render_midi(midi_bytes(notes), sample_rate=SR)
    for (_, pitch, on, off, _), expect in zip(notes[:3], (440.0, 659.26, 880.0)):
        f = pitch_of(audio, on + 0.1, off)
        assert abs(f - expect) / expect < 0.01, (pitch, f)
    for want in (0.5, 1.5, 2.5, 3.5):
        got = onset_near(audio, want)
        assert abs(got - want) <= 0.010, (got, want)
    quiet_before = np.abs(audio[: int(0.45 * SR)]).max()
    assert quiet_before < 1e-4  # nothing before the first note
    # the file ends once the last release has died away: nothing hangs
    assert len(audio) / SR < 4.0 + 3.0
    assert np.abs(audio[-int(0.05 * SR):]).max() < 1e-3
    peak = np.abs(audio).max()
    assert 0.05 < peak <= 0.99


def test_sustain_pedal_holds_released_keys_until_it_lifts():
    pedal = [(0.1, mido.Message("control_change", channel=0, control=64, value=127)),
             (1.5, mido.Message("control_change", channel=0, control=64, value=0))]
    engine = SynthEngine(sample_rate=SR)
    events = midi_events(midi_bytes([(0, 69, 0.2, 0.4, 19)], extra=pedal))  # church organ: no decay of its own
    audio = render_events(events, engine)
    audio = np.concatenate([audio, np.zeros((3 * SR, 2), np.float32)])  # the render ends once silent
    level = lambda a, b: np.sqrt((audio[int(a * SR):int(b * SR)] ** 2).mean())  # noqa: E731
    assert level(1.2, 1.4) > 0.3 * level(0.25, 0.4)   # still sounding under the pedal
    assert level(2.2, 2.4) < 0.01 * level(0.25, 0.4)  # gone once it lifts


def test_drums_on_channel_10_and_every_program():
    engine = SynthEngine(sample_rate=SR)
    drum = render_events(midi_events(midi_bytes([(9, 38, 0.0, 0.2, 0)])), engine)  # snare
    engine = SynthEngine(sample_rate=SR)
    piano = render_events(midi_events(midi_bytes([(0, 38, 0.0, 0.2, 0)])), engine)  # D2 on a piano

    def centroid(a):
        x = a[: int(0.2 * SR)].mean(axis=1)
        s = np.abs(np.fft.rfft(x))
        return float((s * np.fft.rfftfreq(len(x), 1 / SR)).sum() / s.sum())
    assert centroid(drum) > 2 * centroid(piano)  # a kit's noise, not a low D
    engine = SynthEngine(sample_rate=SR)
    for program in range(128):  # every GM program sounds
        engine.handle(mido.Message("program_change", channel=0, program=program))
        engine.handle(mido.Message("note_on", channel=0, note=60, velocity=100))
        assert np.abs(engine.render(SR // 10)).max() > 1e-3, program
        engine.handle(mido.Message("control_change", channel=0, control=120, value=0))
        engine.render(SR // 100)


def test_all_notes_off_silences_what_sounds():
    engine = SynthEngine(sample_rate=SR)
    for ch, program in ((0, 48), (1, 19), (2, 0)):
        engine.handle(mido.Message("program_change", channel=ch, program=program))
        engine.handle(mido.Message("control_change", channel=ch, control=64, value=127))
        engine.handle(mido.Message("note_on", channel=ch, note=60 + ch, velocity=110))
    assert np.abs(engine.render(SR // 5)).max() > 0.01
    for ch in range(3):  # what Scheduler.stop sends on every used channel
        engine.handle(mido.Message("control_change", channel=ch, control=64, value=0))
        engine.handle(mido.Message("control_change", channel=ch, control=123, value=0))
    engine.render(2 * SR)
    assert np.abs(engine.render(SR // 10)).max() < 1e-4


def test_score_render_and_wav(tmp_path):
    from core.live.synth import render_score

    score = Score([Note(0, 480, 69, 100, 0, False), Note(480, 480, 36, 100, 0, True)])
    audio = render_score(score, sample_rate=SR)
    assert abs(pitch_of(audio, 0.1, 0.45) - 440) < 4.4
    path = tmp_path / "out.wav"
    write_wav(path, audio, SR)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, SR, len(audio))


def test_bad_input_says_why(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    with pytest.raises(SynthError, match="cannot read the MIDI file"):
        render_midi(bad)
    with pytest.raises(SynthError, match="no SoundFont"):
        SynthEngine(tmp_path / "missing.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"RIFF0000junk")
    with pytest.raises(SynthError, match="cannot load the SoundFont"):
        SynthEngine(junk)


def test_a_key_struck_again_under_the_pedal_does_not_hang():
    engine = SynthEngine(sample_rate=SR)
    on = lambda: engine.handle(mido.Message("note_on", channel=0, note=60, velocity=100))  # noqa: E731
    off = lambda: engine.handle(mido.Message("note_off", channel=0, note=60))  # noqa: E731
    engine.handle(mido.Message("program_change", channel=0, program=19))  # an organ sustains until released
    engine.handle(mido.Message("control_change", channel=0, control=64, value=127))
    for _ in range(3):
        on(), engine.render(SR // 10), off(), engine.render(SR // 10)
    engine.handle(mido.Message("control_change", channel=0, control=64, value=0))
    engine.render(2 * SR)
    assert np.abs(engine.render(SR // 10)).max() < 1e-4


def test_cli_render_writes_a_wav_faster_than_real_time(tmp_path, capsys):
    from core.cli import main

    notes = [(ch, 48 + (i * 7 + ch * 5) % 36, i * 0.25, i * 0.25 + 0.5, (0, 24, 48, 0)[ch]) for i in range(120)
             for ch in range(3)]
    notes += [(9, 36 + i % 10, i * 0.25, i * 0.25 + 0.1, 0) for i in range(120)]
    src = tmp_path / "in.mid"
    src.write_bytes(midi_bytes(notes))
    out = tmp_path / "out.wav"
    assert main(["render", str(src), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    speed = float(printed.rsplit("(", 1)[1].split("x")[0])
    assert speed >= 20, printed  # 30 s of four parts
    with wave.open(str(out)) as w:
        assert w.getnframes() / w.getframerate() > 30
    assert main(["render", str(tmp_path / "missing.mid"), "-o", str(out)]) == 2
    assert "cannot read the MIDI file" in capsys.readouterr().err

"""What each `rwkv-music` verb does (core.cli parses the command line and calls one of these).

Each verb is a small function over the same core API the GUI uses; heavy modules are imported inside it so
that `rwkv-music inspect` starts fast. A failure to tell the user is a CliError: core.cli prints it as one
line `error: <reason>` and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys


class CliError(Exception):
    """A failure to report to the user as one line."""


def _read(path: str):
    """read_midi(path): (Score, ReadReport), a file it cannot read as a CliError."""
    from .midi import MidiReadError, read_midi

    try:
        return read_midi(path)
    except MidiReadError as e:
        raise CliError(e) from None
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None


def _write(score, path: str) -> None:
    """write_midi(score, path), a file it cannot write as a CliError."""
    from .midi import write_midi

    try:
        write_midi(score, path)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None


# --- issue 2: files and tokens ---------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from .score import GM_PROGRAM_NAMES, TICKS_PER_BEAT, pitch_name

    score, report = _read(args.file)

    def where(tick: int) -> str:
        bar = score.bar_at(tick)
        beat = (tick - score.bar_starts(tick)[bar]) / TICKS_PER_BEAT
        return f"bar {bar + 1}" + (f" beat {beat + 1:g}" if beat else "")

    def listing(items: list[str], shown: int = 12) -> str:
        more = f"; ... {len(items) - shown} more" if len(items) > shown else ""
        return "; ".join(items[:shown]) + more

    tracks = score.tracks()
    print(f"file: {args.file}")
    print(f"tracks: {len(tracks)}")
    for t in tracks:
        pitches = [n.pitch for n in t.notes]
        kind = "drums     " if t.drum else f"program {t.program:<3}"
        instrument = "" if t.drum or t.label == GM_PROGRAM_NAMES[t.program] else f"  ({GM_PROGRAM_NAMES[t.program]})"
        print(f"  {t.label:<26} {kind}  {len(t.notes):>6} notes  "
              f"{pitch_name(min(pitches))}..{pitch_name(max(pitches))}{instrument}")
    end = score.end_tick
    bars = score.bar_at(end - 1) + 1 if score.notes else 0
    print(f"notes: {len(score.notes)}")
    print(f"duration: {bars} bars, {score.seconds_at(end):.1f} s")
    print("tempo: " + listing([f"{t.bpm:g} BPM at {where(t.tick)}" for t in score.tempos]))
    print("meter: " + listing([f"{m.numerator}/{m.denominator} at {where(m.tick)}" for m in score.time_signatures]))
    print("read report:" + ("".join(f"\n  {line}" for line in report.messages) or " read as is"))
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    import json

    from .tokenizer import Tokenizer

    score, read_report = _read(args.file)
    tok = Tokenizer()
    view = score.token_view()  # the model's view (core.meter: its meter, its notes on the grid)
    ids, encode_report = tok.encode_with_report(view)
    notes = len(score.notes)
    per_note = round(len(ids) / notes, 4) if notes else None
    if args.json:
        print(json.dumps({"tokens": ids, "names": [tok.token_name(i) for i in ids], "notes": notes,
                          "tokens_per_note": per_note, "tokenizer": tok.VERSION, "view_shift": view.view_shift,
                          "read_report": list(read_report.messages), "encode_report": encode_report}))
        return 0
    # One line per bar: the bar's tokens by name.
    lines, line = [], []
    for i in ids:
        if i in (tok.bar_id, tok.eos_id) and line:
            lines.append(" ".join(line))
            line = []
        line.append(tok.token_name(i))
    lines.append(" ".join(line))
    print("\n".join(lines))
    print(f"# {len(ids)} tokens, {notes} notes, {per_note} tokens/note, tokenizer {tok.VERSION}")
    for message in list(read_report.messages) + encode_report:
        print(f"# {message}")
    return 0


def cmd_roundtrip(args: argparse.Namespace) -> int:
    from collections import Counter

    from .tokenizer import Tokenizer

    score, read_report = _read(args.input)
    tokenizer = Tokenizer()
    ids, encode_report = tokenizer.encode_with_report(score)
    decoded, stats = tokenizer.decode(ids)
    _write(decoded, args.output)

    def common(fields: str) -> int:
        def keys(s):
            return Counter(tuple(getattr(n, f) for f in fields.split()) for n in s.notes)
        return sum((keys(score) & keys(decoded)).values())

    identical, placed = common("start duration pitch velocity program drum"), common("start pitch program drum")
    print(f"read: {len(score.notes)} notes; " + ("; ".join(read_report.messages) or "read as is"))
    print(f"tokens: {len(ids)}" + "".join(f"\n  {line}" for line in encode_report))
    print(f"decoded: {stats.notes} notes in {stats.bars} bars, {stats.invalid} invalid tokens")
    print(f"notes: {len(score.notes)} in, {len(decoded.notes)} out: {identical} identical, "
          f"{placed} with the same start, pitch and instrument")
    for name, before, after in (("tempo map", score.tempos, decoded.tempos),
                                ("meter", score.time_signatures, decoded.time_signatures)):
        print(f"{name}: " + ("kept" if before == after else f"changed ({len(before)} changes in, {len(after)} out)"))
    print(f"wrote {args.output}")
    return 0


def cmd_resave(args: argparse.Namespace) -> int:
    """Open then save, as the app does: a check that a file survives the app unchanged."""
    from .score import Score

    score, report = _read(args.input)
    # The app's document holds the tracks without their notes, and the notes each naming its track
    # (musicapp/document.py load_score); saving puts them back together (to_score).
    document = Score(score.document_notes(), list(score.tempos), list(score.time_signatures),
                     tracks=score.skeleton())
    _write(document, args.output)
    tracks = document.tracks(include_empty=True)
    print(f"read: {len(tracks)} tracks, {sum(len(t.notes) for t in tracks)} notes, "
          f"{sum(len(t.events) for t in tracks)} other events, {len(score.tempos)} tempo and "
          f"{len(score.time_signatures)} meter changes")
    print("read report:" + ("".join(f"\n  {line}" for line in report.messages) or " read as is"))
    print(f"wrote {args.output}")
    return 0


# --- issue 5: training and evaluation --------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    import signal

    from .training.train import run_training
    from .training.train_config import TrainingError
    from .training.train_options import config_from_args

    stop = {"asked": False}

    def ask_stop(signum, frame):  # Ctrl-C: finish the step, checkpoint, stop
        stop["asked"] = True

    tty = sys.stderr.isatty()

    def show(e) -> None:
        if tty and e.kind in ("eval", "done", "cancelled"):
            print(file=sys.stderr)  # end the progress bar's line
        if e.kind == "scan":
            print(f"scan: {e.message}")
            for s in (e.report or {}).get("skipped", []):
                print(f"  skipped {s['path']}: {s['reason']}")
        elif e.kind == "step" and e.loss is None:
            print(e.message)
        elif e.kind == "step":
            done = e.step / max(1, e.total_steps)
            bar = "#" * int(done * 30) + "-" * (30 - int(done * 30))
            eta = f"{int(e.eta_s) // 60}m{int(e.eta_s) % 60:02d}s" if e.eta_s is not None else "?"
            line = (f"[{bar}] {e.step}/{e.total_steps} loss {e.loss:.4f} "
                    f"{e.tokens_per_s or 0:.0f} tok/s eta {eta}")
            print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        elif e.kind == "eval":
            print(f"step {e.step}: validation loss {e.val_loss:.4f} nats/token, {e.bits_per_note:.3f} bits/note")
        elif e.kind in ("done", "cancelled"):
            print(e.message)
            for name, path in e.paths.items():
                print(f"  {name}: {path}")

    import threading
    in_main = threading.current_thread() is threading.main_thread()  # signals only work there
    previous = signal.signal(signal.SIGINT, ask_stop) if in_main else None
    try:
        run_training(config_from_args(args), show, lambda: stop["asked"])
    except TrainingError as e:
        raise CliError(str(e)) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    return 130 if stop["asked"] else 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evaluate.files import EvaluationError, evaluate_files

    try:
        result = evaluate_files(args.model, args.path, args.style, strength=args.style_strength,
                                memory=args.memory)
    except EvaluationError as e:
        raise CliError(str(e)) from None
    if args.json:
        print(json.dumps(result))
        return 0
    for f in result["files"]:
        print(f"{f['path']}: {f['tokens']} tokens, {f['bits_per_token']:.4f} bits/token")
    for s in result["skipped"]:
        print(f"{s['path']}: skipped ({s['reason']})")
    if result["bits_per_token"] is not None:
        print(f"total: {result['bits_per_token']:.4f} bits/token, {result['bits_per_note']:.4f} bits/note "
              f"({result['scored']})")
    return 0


# --- issue 6: generation and live MIDI -------------------------------------------------------
def cmd_ports(args: argparse.Namespace) -> int:
    from .live import default_midi_api, list_ports, midi_api_label

    api = args.midi_api or default_midi_api()
    print(f"MIDI system: {midi_api_label(api) if api else 'default'}")
    listing = list_ports(api)  # never raises: no MIDI system gives empty lists and a reason
    for title, names in (("inputs", listing.inputs), ("outputs", listing.outputs)):
        print(f"{title}:" + ("".join(f"\n  {name}" for name in names) or " none"))
    if listing.reason:
        print(f"note: {listing.reason}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """A MIDI file to a WAV file through the app's built-in synth, faster than real time."""
    import time

    from .live.synth import SynthError, midi_events, render_events, write_wav, SynthEngine

    if not str(args.output).lower().endswith(".wav"):
        raise CliError(f"the output must be a .wav file, got {args.output!r}")
    try:
        start = time.perf_counter()
        audio = render_events(midi_events(args.file), SynthEngine(args.soundfont, args.rate))
        write_wav(args.output, audio, args.rate)
    except SynthError as e:
        raise CliError(str(e)) from e
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}") from e
    took = time.perf_counter() - start
    seconds = len(audio) / args.rate
    print(f"wrote {args.output}: {seconds:.1f} s of audio in {took:.2f} s "
          f"({seconds / max(took, 1e-9):.0f}x real time)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import os

    from .generate import Generator, parse_instruments
    from .midi import MidiReadError, read_midi

    try:
        prompt, _ = read_midi(args.prompt)
        instruments = parse_instruments(args.instruments) if args.instruments else None
        gen = Generator.load(args.model, args.style, strength=args.style_strength)
    except (MidiReadError, OSError, ValueError, KeyError) as e:
        raise CliError(e) from None
    if args.bars < 1 or args.variations < 1:
        raise CliError("--bars and --variations must be at least 1")
    stream = gen.stream(prompt, bars=args.bars, variations=args.variations, sampling=_sampling(args),
                        instruments=instruments)
    notes = [[] for _ in range(args.variations)]
    for item in stream:
        notes[item.variation].append(item.note)
    root, ext = os.path.splitext(args.output)
    for v, v_notes in enumerate(notes):
        path = args.output if args.variations == 1 else f"{root}-{v + 1}{ext or '.mid'}"
        _write(stream.score(v_notes), path)
        print(f"{path}: {len(v_notes)} notes in {args.bars} bars from bar {prompt.bar_at(stream.start_tick) + 1}")
    per_token = stream.step_seconds / max(stream.steps, 1) * 1000
    print(f"prompt {len(stream.window.ids)} tokens in {stream.prefill_seconds * 1000:.0f} ms; "
          f"{stream.steps} steps at {per_token:.1f} ms")
    return 0


# --- issue 17: infill ----------------------------------------------------------------------------
def _infill_generator(args: argparse.Namespace):
    """The model of --model (default: the bundled base model, as the app starts with) with --style."""
    from .generate import Generator
    from .paths import base_model

    model = args.model or base_model()
    if model is None:
        raise CliError("no --model given and no bundled base model found (python -m core.paths shows where)")
    try:
        gen = Generator.load(str(model), args.style, strength=args.style_strength)
    except (OSError, ValueError, KeyError) as e:
        raise CliError(f"cannot load {model}: {e}") from None
    if not gen.tokenizer.infill:
        raise CliError(f"{model} was made with tokenizer {gen.tokenizer.VERSION}, which has no infill tokens: "
                       f"infill and accompany need a model trained with infill examples (tokenizer rwkvmusic-tok-2)")
    return gen


def _write_infill(args: argparse.Namespace, stream, what: str) -> int:
    import os

    notes = [[] for _ in range(stream.variations)]
    for item in stream:
        notes[item.variation].append(item.note)
    root, ext = os.path.splitext(args.output)
    first_bar, last_bar = stream.bar_numbers
    for v, v_notes in enumerate(notes):
        path = args.output if stream.variations == 1 else f"{root}-{v + 1}{ext or '.mid'}"
        _write(stream.score(v_notes), path)
        print(f"{path}: {len(v_notes)} new notes {what} in bars {first_bar}-{last_bar}")
    per_token = stream.step_seconds / max(stream.steps, 1) * 1000
    first = f"first note after {stream.first_note_seconds * 1000:.0f} ms; " if stream.first_note_seconds else ""
    print(f"{len(stream.chunks)} chunk(s); prefill {stream.prefill_seconds * 1000:.0f} ms; {first}"
          f"{stream.steps} steps at {per_token:.1f} ms")
    return 0


def _sampling(args: argparse.Namespace):
    from .sampling_config import SamplingConfig

    if args.variations < 1:
        raise CliError("--variations must be at least 1")
    return SamplingConfig(args.temperature, args.top_p, args.top_k, args.seed, args.memory, grid=not args.free_rhythm)


def cmd_infill(args: argparse.Namespace) -> int:
    from .generate import parse_instruments
    from .infill import bar_range, infill, parse_bar_range

    try:
        first, last = parse_bar_range(args.bars)
        instruments = parse_instruments(args.instruments) if args.instruments else None
    except ValueError as e:
        raise CliError(e) from None
    score, _ = _read(args.input)
    sampling = _sampling(args)
    gen = _infill_generator(args)
    start, end = bar_range(score, gen.tokenizer, first, last)
    try:
        stream = infill(gen, score, start, end, variations=args.variations, sampling=sampling,
                        instruments=instruments)
    except ValueError as e:
        raise CliError(e) from None
    return _write_infill(args, stream, "regenerated")


def cmd_accompany(args: argparse.Namespace) -> int:
    from .generate import parse_instruments
    from .infill import add_part, bar_range, parse_bar_range

    try:
        instrument = parse_instruments([args.instrument])[0]
        bars = parse_bar_range(args.bars) if args.bars else None
    except ValueError as e:
        raise CliError(e) from None
    score, _ = _read(args.input)
    sampling = _sampling(args)
    gen = _infill_generator(args)
    start, end = bar_range(score, gen.tokenizer, *bars) if bars else (None, None)
    try:
        stream = add_part(gen, score, instrument, start, end, variations=args.variations, sampling=sampling)
    except ValueError as e:
        raise CliError(e) from None
    return _write_infill(args, stream, "in a new part")


def cmd_live(args: argparse.Namespace) -> int:
    import time

    from .generate import Generator
    from .live import Player, PortError, SchedulerProcess
    from .midi import MidiReadError, read_midi

    try:
        prompt, _ = read_midi(args.prompt)
        gen = Generator.load(args.model, args.style, strength=args.style_strength)
        # The output and its scheduler live in a child process: the generator here cannot delay a note.
        scheduler = SchedulerProcess(None if args.virtual else args.out_port, virtual=bool(args.virtual),
                                     backend=args.midi_api).start()
    except (MidiReadError, OSError, ValueError, KeyError, PortError) as e:
        raise CliError(e) from None
    print(f"playing on {scheduler.port_name}", flush=True)
    pressed = time.perf_counter()
    from .sampling_config import SamplingConfig
    sampling = SamplingConfig(seed=args.seed, memory=args.memory, grid=not args.free_rhythm)
    stream = gen.stream(prompt, bars=args.bars, sampling=sampling)
    player = Player(scheduler).play((item.note for item in stream), prompt, start_tick=stream.start_tick)
    try:
        while not player.wait(0.1):
            pass
        late_ms = 1000 * max(scheduler.lateness, default=0.0)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        raise
    finally:
        player.stop()  # every sounding note released, then pedal up and All Notes Off
        scheduler.close()
    if player.error is not None:
        raise CliError(f"generation failed: {player.error}")
    if player.first_note_time is not None:
        print(f"first note {1000 * (player.first_note_time - pressed):.0f} ms after start; "
              f"{len(player.scheduled)} notes, sent at most {late_ms:.2f} ms late, {player.underruns} underruns")
    return 0


def cmd_jam(args: argparse.Namespace) -> int:
    import threading

    from .generate import Generator
    from .live import ClockFollower, JamConfig, JamSession, PortError, SchedulerProcess, open_input

    try:
        gen = Generator.load(args.model, args.style, strength=args.style_strength)
        # answers are timed away from the generator
        scheduler = SchedulerProcess(args.out_port, backend=args.midi_api).start()
    except (OSError, ValueError, KeyError, PortError) as e:
        raise CliError(e) from None
    from .sampling_config import SamplingConfig
    sampling = SamplingConfig(memory=args.memory, grid=not args.free_rhythm)
    jam = JamSession(gen, scheduler, JamConfig(sampling=sampling), clock=ClockFollower(),
                     on_state=lambda state: print(state, flush=True))
    try:
        inp = open_input(args.in_port, jam.on_message, backend=args.midi_api)
    except PortError as e:
        scheduler.close()
        raise CliError(e) from None
    print(f"listening on {inp.name}, answering on {scheduler.port_name} (Ctrl+C to stop)", flush=True)
    jam.start()
    try:
        threading.Event().wait()
    finally:
        inp.close()
        jam.close()
        scheduler.close()  # releases every sounding note

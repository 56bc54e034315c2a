"""The `rwkv-music` command line: thin over the same core API the GUI uses.

Each subcommand is a small function below; heavy modules are imported inside it so that
`rwkv-music inspect` starts fast. Every user-facing failure ends as one line `error: <reason>`
on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .train_options import add_train_arguments


class CliError(Exception):
    """A failure to report to the user as one line."""


# --- issue 2: files and tokens ---------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from .midi import MidiReadError, read_midi
    from .score import GM_PROGRAM_NAMES, TICKS_PER_BEAT, pitch_name

    try:
        score, report = read_midi(args.file)
    except MidiReadError as e:
        raise CliError(e) from None

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

    from .midi import MidiReadError, read_midi
    from .tokenizer import Tokenizer

    try:
        score, read_report = read_midi(args.file)
    except MidiReadError as e:
        raise CliError(str(e)) from e
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror or e}") from e
    tok = Tokenizer()
    ids, encode_report = tok.encode_with_report(score.token_view())  # the model's view (core.meter)
    notes = len(score.notes)
    per_note = round(len(ids) / notes, 4) if notes else None
    if args.json:
        print(json.dumps({"tokens": ids, "names": [tok.token_name(i) for i in ids], "notes": notes,
                          "tokens_per_note": per_note, "tokenizer": tok.VERSION,
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

    from .midi import MidiReadError, read_midi, write_midi
    from .tokenizer import Tokenizer

    try:
        score, read_report = read_midi(args.input)
    except MidiReadError as e:
        raise CliError(e) from None
    tokenizer = Tokenizer()
    ids, encode_report = tokenizer.encode_with_report(score)
    decoded, stats = tokenizer.decode(ids)
    try:
        write_midi(decoded, args.output)
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}") from None

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
    from .midi import MidiReadError, read_midi, write_midi
    from .score import Score

    try:
        score, report = read_midi(args.input)
    except MidiReadError as e:
        raise CliError(e) from None
    # The app's document holds the tracks without their notes, and the notes each naming its track
    # (musicapp/document.py load_score); saving puts them back together (to_score).
    document = Score(score.document_notes(), list(score.tempos), list(score.time_signatures),
                     tracks=score.skeleton())
    try:
        write_midi(document, args.output)
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror or e}") from None
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

    from .train import run_training
    from .train_config import TrainingError
    from .train_options import config_from_args

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


def cmd_generate(args: argparse.Namespace) -> int:
    import os

    from .generate import Generator, parse_instruments
    from .midi import MidiReadError, read_midi, write_midi

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
        try:
            write_midi(stream.score(v_notes), path)
        except OSError as e:
            raise CliError(f"cannot write {path}: {e}") from None
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

    from .midi import write_midi

    notes = [[] for _ in range(stream.variations)]
    for item in stream:
        notes[item.variation].append(item.note)
    root, ext = os.path.splitext(args.output)
    first_bar, last_bar = stream.lines.index(stream.start_tick) + 1, stream.lines.index(stream.end_tick)
    for v, v_notes in enumerate(notes):
        path = args.output if stream.variations == 1 else f"{root}-{v + 1}{ext or '.mid'}"
        try:
            write_midi(stream.score(v_notes), path)
        except OSError as e:
            raise CliError(f"cannot write {path}: {e.strerror or e}") from None
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
    return SamplingConfig(args.temperature, args.top_p, args.top_k, args.seed, args.memory)


def cmd_infill(args: argparse.Namespace) -> int:
    from .generate import parse_instruments
    from .infill import bar_range, infill, parse_bar_range
    from .midi import MidiReadError, read_midi

    try:
        first, last = parse_bar_range(args.bars)
        instruments = parse_instruments(args.instruments) if args.instruments else None
        score, _ = read_midi(args.input)
    except (MidiReadError, OSError, ValueError) as e:
        raise CliError(e) from None
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
    from .midi import MidiReadError, read_midi

    try:
        instrument = parse_instruments([args.instrument])[0]
        bars = parse_bar_range(args.bars) if args.bars else None
        score, _ = read_midi(args.input)
    except (MidiReadError, OSError, ValueError) as e:
        raise CliError(e) from None
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
    stream = gen.stream(prompt, bars=args.bars, sampling=SamplingConfig(memory=args.memory))
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
    jam = JamSession(gen, scheduler, JamConfig(sampling=SamplingConfig(memory=args.memory)), clock=ClockFollower(),
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


MIDI_API_CHOICES = ("alsa", "jack", "coremidi", "winmm")  # core.live.MIDI_APIS (not imported here: mido)


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a strength >= 0 (0 = the base model, 1 = as trained), got {text!r}")
    return value


def _add_style(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", metavar="FILE", help="a style file (style.pth) learnt on this model")
    parser.add_argument("--style-strength", type=_strength, default=1.0, metavar="S",
                        help="how strongly the style steers: 0 = the base model, 1 = as trained (default), "
                             "above 1 exaggerates")


def _add_memory(parser: argparse.ArgumentParser) -> None:
    from .sampling_config import DEFAULT_MEMORY
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--memory", type=_strength, default=DEFAULT_MEMORY, metavar="M",
                   help="how strongly the memory of the piece so far (and of the style's folder) steers every "
                        "note: 0 = the bare network, 1 = as fitted (default)")
    g.add_argument("--no-memory", dest="memory", action="store_const", const=0.0, help="the bare network (--memory 0)")


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    from .sampling_config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
    parser.add_argument("--variations", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="0: always the likeliest note")
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int)
    _add_memory(parser)


def _add_midi_api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midi-api", choices=MIDI_API_CHOICES,
                        help="MIDI system: alsa or jack (Linux), coremidi (macOS), winmm (Windows); "
                             "default: the one MIDO_BACKEND names, else the platform's own")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rwkv-music", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="show tracks, programs, notes, tempo map, meter and the read report")
    s.add_argument("file")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("tokens", help="tokenize a MIDI file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true", help="print a JSON object (tokens, notes, tokens_per_note)")
    s.set_defaults(func=cmd_tokens)

    s = sub.add_parser("roundtrip", help="encode a MIDI file to tokens, decode it and write the result")
    s.add_argument("input")
    s.add_argument("output")
    s.set_defaults(func=cmd_roundtrip)

    s = sub.add_parser("resave", help="open a MIDI file and save it, as the app does (what survives the app)")
    s.add_argument("input")
    s.add_argument("output")
    s.set_defaults(func=cmd_resave)

    s = sub.add_parser("train", help="fine-tune (or pretrain) on a folder of MIDI files")
    add_train_arguments(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="bits per token and per note of a model on MIDI files")
    s.add_argument("path", nargs="+")
    s.add_argument("--model", help="default: the bundled base model")
    _add_style(s)
    _add_memory(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("ports", help="list MIDI inputs and outputs")
    _add_midi_api(s)
    s.set_defaults(func=cmd_ports)

    s = sub.add_parser("generate", help="continue a MIDI file")
    s.add_argument("--model", help="default: the bundled base model")
    _add_style(s)
    s.add_argument("--prompt", required=True)
    s.add_argument("--bars", type=int, default=8)
    _add_sampling(s)
    s.add_argument("--instruments", nargs="*")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_generate)

    for verb, text in (("infill", "regenerate a bar range of a MIDI file (everything else stays as it is)"),
                       ("accompany", "add a part of one instrument to a MIDI file (every existing note stays)")):
        s = sub.add_parser(verb, help=text)
        s.add_argument("--model", help="default: the bundled base model")
        _add_style(s)
        s.add_argument("--in", dest="input", required=True, metavar="IN.mid")
        if verb == "infill":
            s.add_argument("--bars", required=True, help="bars to regenerate, e.g. 5-8 (counted from 1)")
            s.add_argument("--instruments", nargs="*", help="GM names or program numbers the range is written "
                                                            "with (default: those in it); other notes there stay")
        else:
            s.add_argument("--instrument", required=True, help='GM name or program number, e.g. "Electric Bass '
                                                               '(finger)" or 33, or drums')
            s.add_argument("--bars", help="bars the part covers, e.g. 1-16 (default: the whole piece)")
        _add_sampling(s)
        s.add_argument("-o", "--output", required=True, metavar="OUT.mid")
        s.set_defaults(func=cmd_infill if verb == "infill" else cmd_accompany)

    s = sub.add_parser("live", help="continue a MIDI file and play it live to a MIDI output")
    s.add_argument("--model", help="default: the bundled base model")
    _add_style(s)
    s.add_argument("--prompt", required=True)
    s.add_argument("--bars", type=int, default=8)
    _add_memory(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--out-port")
    g.add_argument("--virtual", action="store_true")
    _add_midi_api(s)
    s.set_defaults(func=cmd_live)

    s = sub.add_parser("jam", help="answer a player on a MIDI input when they pause")
    s.add_argument("--model", help="default: the bundled base model")
    _add_style(s)
    s.add_argument("--in-port", required=True)
    s.add_argument("--out-port", required=True)
    _add_memory(s)
    _add_midi_api(s)
    s.set_defaults(func=cmd_jam)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "model", "") is None:  # every verb that takes a model defaults to the bundled one
            from .paths import base_model
            args.model = base_model()
            if args.model is None:
                raise CliError("no --model given and no bundled base model found (python -m core.paths shows where)")
            args.model = str(args.model)
        return args.func(args) or 0
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `rwkv-music tokens x.mid | head`: the reader went away, which is fine
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

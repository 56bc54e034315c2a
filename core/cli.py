"""The `rwkv-music` command line: thin over the same core API the GUI uses.

This module parses the command line (`build_parser`) and runs one verb (`main`); what each verb does is in
core.cli_commands, where heavy modules are imported inside each verb so that `rwkv-music inspect` starts
fast. Every user-facing failure ends as one line `error: <reason>` on stderr and exit status 2, never a
traceback.
"""
from __future__ import annotations

import argparse
import sys

from .cli_commands import (CliError, cmd_accompany, cmd_eval, cmd_generate, cmd_infill, cmd_inspect, cmd_jam,
                           cmd_live, cmd_ports, cmd_render, cmd_resave, cmd_roundtrip, cmd_tokens, cmd_train)
from .training.train_options import add_train_arguments

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


def _add_grid(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--free-rhythm", action="store_true",
                        help="new notes may start anywhere in the beat (default: only where the piece's own "
                             "onsets do, when it keeps to a grid)")


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    from .sampling_config import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
    parser.add_argument("--variations", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="0: always the likeliest note")
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int)
    _add_memory(parser)
    _add_grid(parser)


def _add_midi_api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midi-api", choices=MIDI_API_CHOICES,
                        help="MIDI system: alsa or jack (Linux), coremidi (macOS), winmm (Windows); "
                             "default: the one MIDO_BACKEND names, else the platform's own")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rwkv-music", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for add_verbs in (_file_verbs, _training_verbs, _sound_verbs, _generation_verbs, _live_verbs):
        add_verbs(sub)  # in this order in --help
    return p


def _file_verbs(sub) -> None:
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


def _training_verbs(sub) -> None:
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


def _sound_verbs(sub) -> None:
    s = sub.add_parser("ports", help="list MIDI inputs and outputs")
    _add_midi_api(s)
    s.set_defaults(func=cmd_ports)

    s = sub.add_parser("render", help="render a MIDI file to WAV audio with the built-in General MIDI synth")
    s.add_argument("file")
    s.add_argument("-o", "--output", required=True, metavar="OUT.wav")
    s.add_argument("--rate", type=int, default=44100, choices=(22050, 44100, 48000, 96000), help="sample rate")
    s.add_argument("--soundfont", metavar="SF2", help="another .sf2/.sf3 (default: the bundled GM bank)")
    s.set_defaults(func=cmd_render)


def _generation_verbs(sub) -> None:
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


def _live_verbs(sub) -> None:
    s = sub.add_parser("live", help="continue a MIDI file and play it live to a MIDI output")
    s.add_argument("--model", help="default: the bundled base model")
    _add_style(s)
    s.add_argument("--prompt", required=True)
    s.add_argument("--bars", type=int, default=8)
    s.add_argument("--seed", type=int, help="the same seed and prompt play the same continuation")
    _add_memory(s)
    _add_grid(s)
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
    _add_grid(s)
    _add_midi_api(s)
    s.set_defaults(func=cmd_jam)


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

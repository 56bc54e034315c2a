"""The `rwkv-music` command line: thin over the same core API the GUI uses.

Each subcommand is a small function below; heavy modules are imported inside it so that
`rwkv-music inspect` starts fast. Every user-facing failure ends as one line `error: <reason>`
on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys


class CliError(Exception):
    """A failure to report to the user as one line."""


# --- issue 2: files and tokens ---------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    raise NotImplementedError("inspect")


def cmd_tokens(args: argparse.Namespace) -> int:
    raise NotImplementedError("tokens")


def cmd_roundtrip(args: argparse.Namespace) -> int:
    raise NotImplementedError("roundtrip")


# --- issue 5: training and evaluation --------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    raise NotImplementedError("train")


def cmd_eval(args: argparse.Namespace) -> int:
    raise NotImplementedError("eval")


# --- issue 6: generation and live MIDI -------------------------------------------------------
def cmd_ports(args: argparse.Namespace) -> int:
    raise NotImplementedError("ports")


def cmd_generate(args: argparse.Namespace) -> int:
    raise NotImplementedError("generate")


def cmd_live(args: argparse.Namespace) -> int:
    raise NotImplementedError("live")


def cmd_jam(args: argparse.Namespace) -> int:
    raise NotImplementedError("jam")


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

    s = sub.add_parser("train", help="fine-tune (or pretrain) on a folder of MIDI files")
    s.add_argument("folder")
    s.add_argument("--out", required=True)
    s.add_argument("--base")
    s.add_argument("--mode", choices=["full", "lora", "state"], default="full")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int)
    g.add_argument("--epochs", type=float)
    s.add_argument("--ctx", type=int, default=512)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--resume", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="bits per token and per note of a model on MIDI files")
    s.add_argument("path", nargs="+")
    s.add_argument("--model", required=True)
    s.add_argument("--style")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("ports", help="list MIDI inputs and outputs")
    s.set_defaults(func=cmd_ports)

    s = sub.add_parser("generate", help="continue a MIDI file")
    s.add_argument("--model", required=True)
    s.add_argument("--style")
    s.add_argument("--prompt", required=True)
    s.add_argument("--bars", type=int, default=8)
    s.add_argument("--variations", type=int, default=1)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--top-p", type=float, default=0.95)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--seed", type=int)
    s.add_argument("--instruments", nargs="*")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("live", help="continue a MIDI file and play it live to a MIDI output")
    s.add_argument("--model", required=True)
    s.add_argument("--style")
    s.add_argument("--prompt", required=True)
    s.add_argument("--bars", type=int, default=8)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--out-port")
    g.add_argument("--virtual", action="store_true")
    s.set_defaults(func=cmd_live)

    s = sub.add_parser("jam", help="answer a player on a MIDI input when they pause")
    s.add_argument("--model", required=True)
    s.add_argument("--style")
    s.add_argument("--in-port", required=True)
    s.add_argument("--out-port", required=True)
    s.set_defaults(func=cmd_jam)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`python -m musicapp`, and the `rwkv-music-app` command that `pip install .` creates."""
import sys


def main() -> int:
    from musicapp.app import run  # here: a "spawn" child (the synth's process) re-imports this module

    return run(sys.argv)


if __name__ == "__main__":
    sys.exit(main())

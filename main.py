"""RWKV-Music desktop app: `python main.py` (or `make run`)."""
import sys

if __name__ == "__main__":
    # imported here, not above: a child process started with "spawn" (the synth's, the MIDI scheduler's)
    # runs this file's top level again and must not load Qt
    from musicapp.app import run

    sys.exit(run(sys.argv))

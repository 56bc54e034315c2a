"""RWKV-Music desktop app: `python main.py` (or `make run`)."""
import sys

from musicapp.app import run

if __name__ == "__main__":
    sys.exit(run(sys.argv))

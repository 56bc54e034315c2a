"""`python -m musicapp`, and the `rwkv-music-app` command that `pip install .` creates."""
import sys

from musicapp.app import run


def main() -> int:
    return run(sys.argv)


if __name__ == "__main__":
    sys.exit(main())

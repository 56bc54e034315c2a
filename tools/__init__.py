"""Tooling for tests, benchmarks and the maintainers' scripts: not part of what `pip install .` installs.

jack.py            a private jackd (dummy driver) and a MIDI recorder in a child process: a real loopback
cuda_training.py   bf16 autocast and gradient checkpointing helpers that the CUDA tests and bench use
"""

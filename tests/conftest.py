"""Shared fixtures. Keep small: several test files use these."""
from __future__ import annotations

import pytest

from core.jack import JackServer, jackd_available


@pytest.fixture(scope="session")
def jack_server():
    """A private jackd (dummy driver, 64-frame periods) for the whole session: a real MIDI loopback.

    It runs under a unique server name that every JACK client of this process uses; killed by PID at the end.
    """
    if not jackd_available():
        pytest.skip("jackd is not installed (apt-get install jackd2): no real MIDI loopback")
    server = JackServer(period=64, rate=48000)
    try:
        server.start()
    except RuntimeError as e:
        pytest.skip(f"jackd did not start: {e}")
    yield server
    server.stop()

"""Load for the real-time benchmarks: what the app does beside the notes it plays. Shared by bench/ scripts."""
from __future__ import annotations

import threading


def sampling_thread(gen, prompt, stop: threading.Event, max_tokens: int) -> threading.Thread:
    """A thread (started) that samples continuations of `prompt` non-stop, as the app's Continue does, until
    `stop` is set."""
    from core.sampling_config import SamplingConfig

    def busy():
        while not stop.is_set():
            for _ in gen.stream(prompt, bars=64, sampling=SamplingConfig(seed=2), max_tokens=max_tokens):
                if stop.is_set():
                    break

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    return thread

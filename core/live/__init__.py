"""Real-time MIDI: ports, a scheduler on absolute deadlines (in a child process too), playing notes,
input capture, clock sync, jam mode, the built-in synth and the metronome.

Time in here is `time.perf_counter()` seconds; music is Score ticks, mapped to seconds through the
Score's tempo map by a Timeline. Every note is sent from the Scheduler's thread, which tracks every
sounding note so that stop, seek, error and exit always release them (a note never hangs); only MIDI
clock has a thread of its own (ClockSender). SchedulerProcess runs the Scheduler in a child process,
out of reach of this process's GIL (the generator, the GUI); a Player feeds either from a stream of notes.

One job per module:
    ports       which MIDI systems exist, listing and opening ports (PortError says why not)
    timing      deadlines (sleep then spin), real-time thread priority, Timeline (ticks <-> seconds)
    scheduler   Scheduler: timed messages from one thread, every sounding note released on stop
    process     SchedulerProcess: the Scheduler in a child process, driven through a pipe
    player      Player: notes (a list or a generator's stream) onto a scheduler
    capture     MidiCapture: what arrives on an input, as a Score
    clock       ClockFollower (a DAW's MIDI clock) and ClockSender (ours)
    jam         JamSession: answers a player; the only module that uses the model, and only to answer
    synth       the built-in General MIDI synth: SynthPort (an output for a scheduler, opened in
                SchedulerProcess's child), offline rendering to WAV (`rwkv-music render`)
    metronome   clicks on the beats and a one-bar count-in, as GM drum notes
Which channel a note sounds on is core.channels' rule, shared with the MIDI file writer.
"""
from ..channels import ChannelMap
from .capture import MidiCapture
from .clock import CLOCKS_PER_BEAT, ClockFollower, ClockSender
from .jam import JamConfig, JamSession
from .player import Player
from .ports import (APP_PORT_NAME, JACK_BACKEND, MIDI_APIS, NO_MIDI_SYSTEM, PortError, PortListing,
                    choose_midi_api, close_port, default_midi_api, is_own_port, list_ports, midi_api_label, midi_apis,
                    midi_backend, open_input, open_output, supports_virtual_ports)
from .process import SchedulerProcess
from .scheduler import Scheduler
from .timing import SPIN_SECONDS, Timeline, raise_thread_priority, sleep_until

__all__ = [
    "APP_PORT_NAME", "CLOCKS_PER_BEAT", "ChannelMap", "ClockFollower", "ClockSender", "JACK_BACKEND",
    "JamConfig", "JamSession", "MIDI_APIS", "MidiCapture", "NO_MIDI_SYSTEM", "Player", "PortError", "PortListing",
    "SPIN_SECONDS", "Scheduler", "SchedulerProcess", "Timeline", "choose_midi_api", "close_port", "default_midi_api",
    "is_own_port", "list_ports", "midi_api_label", "midi_apis", "midi_backend", "open_input", "open_output",
    "raise_thread_priority", "sleep_until", "supports_virtual_ports",
]

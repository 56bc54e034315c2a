"""Score <-> tokens: the vocabulary, the encoder, the grammar of valid next tokens and the decoders.

A piece is written bar by bar on a grid of GRID steps per quarter note:

    BOS [Flat] Tempo                            Flat: every note has one velocity (a score, not a performance)
    Bar [TimeSig] ( Pos [Tempo] note* )*        one line per bar; TimeSig in the first bar and on a change
    ...
    EOS

    note := [Program_p | Drums] [Vel_v] Pitch_n Dur_d

`Pos` is the onset within the bar (strictly increasing inside a bar); a `Tempo` right after a `Pos` is a
tempo change there (`Pos Tempo` alone is a change without a note). The instrument is written only when it
differs from the previous note's; the velocity only when it differs from the one in force, which is that of
the instrument's previous note in the bar, or else the previous note's (so parts keep their own dynamics
while the notes of one onset switch between them).
Both are forgotten at every `Bar`, so every bar is self-contained: a window that starts at any `Bar` only
needs `header_at()` (BOS, Flat, tempo, Bar, meter). At one onset an instrument's pitches strictly rise, so the
same note is never written twice, and at most MAX_ONSET_NOTES of them start together.

Version 2 adds infilling, laid out so that a recurrent model reads the context once and then writes the
missing part (fill-in-the-middle):

    bars:  <before> Gap_k  Tempo Bar TimeSig <after>  Fill Tempo Bar TimeSig <k bars>  EOS
    part:  <bars, without one instrument>  Part Program_p  Fill Tempo Bar TimeSig <the same bars, p only>  EOS

`Gap_k` stands for k missing bars (the meter then in force sets their length); the part after it and the
middle restate tempo and meter. The middle has exactly k bars (the bars of the context for a part) and
only instrument p in a part. Version 1 (`rwkvmusic-tok-1`, the first 1075 ids) has none of these tokens.

The grammar (`GrammarState`) is the one definition of a valid sequence: the encoder writes only valid
sequences, sampling is masked by it, and the decoders keep exactly the tokens it accepts (the rest are
skipped and counted), so decoding never raises.

The modules, each importing only those before it:
    vocabulary  the grid, token kinds and values, the versioned id layout (ids are saved in checkpoints)
    encoder     Score -> tokens (quantising to the grid, with a report of what changed)
    grammar     GrammarState: the valid next tokens, as a mask for sampling
    decoder     tokens -> Score, one id at a time (StreamDecoder)
    codec       Tokenizer: a vocabulary version with all of the above, and bar windows
"""
from .codec import Tokenizer
from .decoder import StreamDecoder
from .grammar import GrammarState
from .vocabulary import (DURATION_STEPS, MAX_BAR_QUARTERS, MAX_GAP_BARS, MAX_ONSET_NOTES, STEP_TICKS,
                         level_velocity, playable_range, velocity_level)

# What the rest of the program imports from core.tokenizer; the other names live in the modules above.
__all__ = ["DURATION_STEPS", "MAX_BAR_QUARTERS", "MAX_GAP_BARS", "MAX_ONSET_NOTES", "STEP_TICKS", "GrammarState",
           "StreamDecoder", "Tokenizer", "level_velocity", "playable_range", "velocity_level"]

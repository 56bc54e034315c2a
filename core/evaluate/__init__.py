"""How well a model knows music, measured: the code behind `rwkv-music eval`, `bench/eval_base.py`,
`bench/sweep_base.py` and their tests.

    files.py        `rwkv-music eval`: bits per token and per note of whole files, through the recurrent state
    bits.py         bits per note: the one conversion of a summed loss (nats or bits) over the notes scored
    memory_bits.py  bits per note with the memories mixed in, as generation mixes them; traces that fit their gates
    scoring.py      bits per note on whole pieces in context windows every model sees alike; infill bits
                    (the middle given before and after, against before only); bits by position from the start
    ngram.py        the interpolated modified Kneser-Ney n-gram baseline
    transformer.py  the causal Transformer baseline, its training loop, and its weights on disk
    music.py        continuations against the truth: pitch-class, inter-onset and velocity histograms,
                    density, key
    tables.py       plain-text tables and JSON output for bench/
"""

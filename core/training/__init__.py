"""Training: a run over a folder of MIDI files (pretraining, full fine-tune, LoRA, style, state), in this
process, in a child process for the GUI, or under torchrun.

    train           the loop; composes the train_* parts (data, example, loss, schedule, weights, resume)
    train_model     what a run trains, each mode's wrapper and its optimizer groups, the result file
    train_config    TrainConfig (every default once), learning rates, events, errors: no torch
    train_options   the options the CLI and torchrun share; train_job: a run in a child process
    data            corpus scan, token cache, training windows, infill examples, batches with masks
    augment, keys   transposition into the folder's keys, tempo, crops
    lora            LoRA parametrization and the LoRA mode's module; style_tuning: learning a style

It uses core.network for the model and its files; nothing in core.network imports it.
"""

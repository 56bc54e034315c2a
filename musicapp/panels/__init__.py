"""Side panels of the main window: continue, fine-tune, MIDI setup."""

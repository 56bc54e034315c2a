"""The piano roll: a QGraphicsScene of plain rect items over a grid, with keyboard, ruler and velocity lane."""
from musicapp.pianoroll.widget import PianoRoll

__all__ = ["PianoRoll"]

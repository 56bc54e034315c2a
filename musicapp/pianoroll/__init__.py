"""The piano roll: a QGraphicsScene of plain rect items over a grid, with keyboard, ruler and velocity lane
(the widget that holds them all: musicapp.pianoroll.widget.PianoRoll)."""

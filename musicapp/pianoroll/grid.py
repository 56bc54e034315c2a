"""Geometry shared by the roll's parts: scene coordinates, bars and beats, key names, colours."""
from __future__ import annotations

from PySide6.QtGui import QColor

from core.arrange import Bar, bars_between  # noqa: F401  (the roll draws core's bars)

# Scene coordinates: x is the tick, y is the key row (row 0 = pitch 127), one unit high.
ROWS = 128
BLACK_KEYS = {1, 3, 6, 8, 10}


def row_of(pitch: int) -> int:
    return ROWS - 1 - pitch


def pitch_at_row(y: float) -> int:
    return max(0, min(127, ROWS - 1 - int(y // 1)))


def is_black(pitch: int) -> bool:
    return pitch % 12 in BLACK_KEYS


# --- colours (dark theme, as most DAWs) ---------------------------------------------------------
BACKGROUND_WHITE_ROW = QColor("#2e3036")
BACKGROUND_BLACK_ROW = QColor("#26282d")
ROW_LINE = QColor("#22242a")
OCTAVE_LINE = QColor("#45484f")
BAR_LINE = QColor("#6a6e78")
BEAT_LINE = QColor("#3d4048")
SUB_LINE = QColor("#33363c")
PLAYHEAD = QColor("#ff5c5c")
LOOP_FILL = QColor(90, 160, 255, 40)
PREVIEW_FILL = QColor("#ffa640")
PREVIEW_EDGE = QColor("#fff0d0")
PREVIEW_REGION = QColor(255, 166, 64, 30)   # the bars a continuation fills
PREVIEW_HUE = PREVIEW_FILL.hue()
PREVIEW_HUE_MARGIN = 25                     # no instrument's hue comes this close to the preview's
REPLACED_OPACITY = 0.3                      # notes a continuation will replace, while it is shown
SELECTED_EDGE = QColor("#ffffff")
LOCKED_EDGE = QColor("#f2f2a0")  # dashed outline of notes that regenerating bars keeps
NOTE_EDGE = QColor("#15171b")


def instrument_colour(program: int, drum: bool, variant: int = 0) -> QColor:
    """A stable, distinct hue per instrument so that tracks read apart, never near the preview's hue
    (47 and 310 share no factor, so the 128 programs get 128 different hues outside that band).
    `variant` k > 0: the k-th other track of the same instrument, turned 113 degrees further each time."""
    span = 360 - 2 * PREVIEW_HUE_MARGIN
    if drum:  # greys, tinted for the other drum tracks
        return QColor.fromHsv((PREVIEW_HUE + PREVIEW_HUE_MARGIN + variant * 113 % span) % 360, 50, 195) if variant \
            else QColor("#a9b0bd")
    hue = PREVIEW_HUE + PREVIEW_HUE_MARGIN + (143 + program * 47 + variant * 113) % span  # 143: piano is blue (200)
    return QColor.fromHsv(hue % 360, 150, 225)


def track_colours(tracks) -> dict[int, QColor]:
    """The roll's colour of each track, from (index, program, drum) in track order: the first track of an
    instrument has the instrument's colour (as its notes had before they named a track), later ones of the
    same instrument other hues, so that a piece of three piano tracks still reads as three parts."""
    seen: dict[tuple[int, bool], int] = {}
    colours: dict[int, QColor] = {}
    for index, program, drum in tracks:
        key = (0, True) if drum else (program, False)
        variant = seen.get(key, 0)
        # a colour no other track has: another instrument's hue may come close (bass 33 beside piano 0)
        options = [instrument_colour(program, drum, variant + k) for k in range(MAX_COLOUR_TRIES)]
        colours[index] = next((c for c in options if _apart(c, colours.values())),
                              max(options, key=lambda c: min((_distance(c, o) for o in colours.values()), default=360)))
        seen[key] = variant + 1
    return colours


MIN_HUE_APART = 18  # degrees between the colours of two tracks
MAX_COLOUR_TRIES = 16


def _distance(a: QColor, b: QColor) -> float:
    """How far two track colours are apart, in hue degrees (greys: by brightness and tint)."""
    if (a.saturation() < 80) != (b.saturation() < 80):
        return 360.0
    d = abs(a.hue() - b.hue())
    return min(d, 360 - d) if a.hue() >= 0 and b.hue() >= 0 else (0.0 if a.name() == b.name() else 360.0)


def _apart(colour: QColor, others) -> bool:
    return all(_distance(colour, o) >= MIN_HUE_APART for o in others)

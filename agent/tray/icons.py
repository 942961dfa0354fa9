"""The tray's icons, drawn with Pillow from the state at run time.

Every icon is the brand mark (an orange disc with a white medical cross) plus, for a status, a badge
in the lower right. The states differ without colour, so in greyscale and with any colour blindness:
each badge has its own silhouette, except that `ok` and `no-driver` share the circle, and there the
whole mark is greyed. Colour is a second signal only.

| state       | badge                                                         |
|-------------|---------------------------------------------------------------|
| `ok`        | green circle, white check mark                                |
| `attention` | amber triangle, dark "!"                                      |
| `broken`    | red square, white X                                           |
| `checking`  | blue pill, three white dots                                   |
| `working`   | blue arrow pointing down (installing), no glyph               |
| `no-driver` | the whole mark greyed; dark circle, white slashed ring        |
| `error`     | dark diamond, white "?"                                       |

Shapes are drawn at `_SUPERSAMPLE` times the size and scaled down with LANCZOS, which anti-aliases
them. _Box edges sit on whole output pixels, so the 16 px icon stays sharp. A gap is cut into the mark
around the badge, which keeps the badge apart from the disc on light and on dark task bars alike.

`packaging/make_icons.py` writes the same images into `icons/`, and a test keeps the two equal.
Only Pillow is imported: the tray imports this module as it starts.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from PIL import Image, ImageChops, ImageDraw

from torchdoctor.agent.tray.status import TrayStatus

_Box: TypeAlias = tuple[float, float, float, float]
_Point: TypeAlias = tuple[float, float]
_Rgba: TypeAlias = tuple[int, int, int, int]

_SUPERSAMPLE: Final = 4
MIN_SIZE: Final = 8  # below this not even the badge's silhouette survives

ORANGE: Final[_Rgba] = (238, 76, 44, 255)  # PyTorch's orange, the brand colour
WHITE: Final[_Rgba] = (255, 255, 255, 255)
# Greyed mark for "no driver": lighter than the orange (luminance 150 against 121), so the two differ
# in greyscale too, and still visible on a light task bar.
GREY: Final[_Rgba] = (150, 150, 150, 255)

GREEN: Final[_Rgba] = (26, 140, 60, 255)
AMBER: Final[_Rgba] = (246, 182, 20, 255)
RED: Final[_Rgba] = (206, 32, 41, 255)
BLUE: Final[_Rgba] = (30, 110, 215, 255)
SLATE: Final[_Rgba] = (70, 70, 92, 255)
INK: Final[_Rgba] = (36, 30, 20, 255)  # dark glyph on amber, where white would have too little contrast


def app_icon(size: int = 256) -> Image.Image:
    """The plain brand mark, `size` px square, RGBA: the window/installer icon and the tray's fallback."""
    return _render(None, _checked(size)).copy()


def status_image(status: TrayStatus, size: int = 64) -> Image.Image:
    """The tray icon for `status`, `size` px square, RGBA.

    Drawn once per (status, size) and cached; the caller gets its own copy, because pystray backends
    convert and resize the image they are given, and a shared cached one must not change under them.
    """
    return _render(TrayStatus(status), _checked(size)).copy()


def _checked(size: int) -> int:
    if size < MIN_SIZE:
        raise ValueError(f"an icon needs at least {MIN_SIZE} px, not {size}")
    return size


@functools.lru_cache(maxsize=64)
def _render(status: TrayStatus | None, size: int) -> Image.Image:
    big = size * _SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    _draw_mark(image, size, grey=status is TrayStatus.NO_DRIVER)
    if status is not None:
        badge = _BADGES[status]
        box = _badge_box(size)
        gap = max(1.0, size / 24) * _SUPERSAMPLE
        # Cut the badge's outline, grown by the gap, out of the mark: a transparent moat, not a white
        # rim, because a white rim disappears on a light task bar.
        moat = Image.new("L", (big, big), 0)
        badge.shape(ImageDraw.Draw(moat), box, gap, 255)
        image.putalpha(ImageChops.subtract(image.getchannel("A"), moat))
        draw = ImageDraw.Draw(image)
        badge.shape(draw, box, 0.0, badge.fill)
        badge.glyph(draw, box)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _draw_mark(image: Image.Image, size: int, *, grey: bool) -> None:
    """The disc and its cross. Widths are whole output pixels and the centre lies on a pixel edge
    (even sizes), so the cross's edges stay crisp at 16 px instead of blurring over two pixels."""
    s = _SUPERSAMPLE
    draw = ImageDraw.Draw(image)
    pad = size / 16 * s
    draw.ellipse(_inside(pad, pad, size * s - pad, size * s - pad), fill=GREY if grey else ORANGE)
    centre = size / 2 * s
    arm = max(2, 2 * round(size / 14)) / 2 * s  # half the bar's width, an even number of pixels wide
    reach = round(size / 4) * s
    draw.rectangle(_inside(centre - arm, centre - reach, centre + arm, centre + reach), fill=WHITE)
    draw.rectangle(_inside(centre - reach, centre - arm, centre + reach, centre + arm), fill=WHITE)


def _inside(x0: float, y0: float, x1: float, y1: float) -> _Box:
    """Pillow's boxes include their right and bottom pixel: (0, 0, 4, 4) fills 5 x 5. The box whose
    pixels are exactly those from x0 up to x1, so a mark is symmetric and a 2 px bar is 2 px wide."""
    return (x0, y0, x1 - 1, y1 - 1)


def _badge_box(size: int) -> _Box:
    """The badge's square, in the lower right corner, in supersampled pixels.

    Tray sizes (up to 32 px) get a larger share of the icon: the glyph inside needs the pixels."""
    side = round(size * (0.625 if size <= 32 else 0.5625))
    low, high = (size - side) * _SUPERSAMPLE, size * _SUPERSAMPLE
    return (low, low, high, high)


# --- shapes: each draws the badge's silhouette grown by `grow` (0 for the badge itself) ---------------

_Shape: TypeAlias = Callable[[ImageDraw.ImageDraw, _Box, float, _Rgba | int], None]
_Glyph: TypeAlias = Callable[[ImageDraw.ImageDraw, _Box], None]


def _at(box: _Box, fx: float, fy: float) -> _Point:
    """A point given as fractions of the box."""
    x0, y0, x1, y1 = box
    return (x0 + fx * (x1 - x0), y0 + fy * (y1 - y0))


def _rounded_polygon(
    draw: ImageDraw.ImageDraw, points: Sequence[_Point], radius: float, fill: _Rgba | int
) -> None:
    """The polygon grown by a disc of `radius` (its Minkowski sum): rounded corners, and the same call
    with a larger radius draws the moat. A grown polygon is the polygon plus its edges stroked 2r wide
    plus a disc on each corner."""
    if len(points) > 2:
        draw.polygon(list(points), fill=fill)
    if radius <= 0:
        return
    closed = [*points, points[0]]
    for a, b in itertools.pairwise(closed):
        draw.line([a, b], fill=fill, width=max(1, round(2 * radius)))
    for corner in points:
        _dot(draw, corner, radius, fill)


def _circle(draw: ImageDraw.ImageDraw, box: _Box, grow: float, fill: _Rgba | int) -> None:
    x0, y0, x1, y1 = box
    draw.ellipse(_inside(x0 - grow, y0 - grow, x1 + grow, y1 + grow), fill=fill)


def _triangle(draw: ImageDraw.ImageDraw, box: _Box, grow: float, fill: _Rgba | int) -> None:
    # Corners rounded by r: the sharp triangle is shrunk by r so the rounded one still fits the box.
    r = (box[2] - box[0]) * 0.08
    x0, y0, x1, y1 = box
    inner = (x0 + r, y0 + r, x1 - r, y1 - r)
    points = [_at(inner, 0.5, 0.0), _at(inner, 1.0, 1.0), _at(inner, 0.0, 1.0)]
    _rounded_polygon(draw, points, r + grow, fill)


def _square(draw: ImageDraw.ImageDraw, box: _Box, grow: float, fill: _Rgba | int) -> None:
    r = (box[2] - box[0]) * 0.1
    inner = (box[0] + r, box[1] + r, box[2] - r, box[3] - r)
    corners = [_at(inner, 0, 0), _at(inner, 1, 0), _at(inner, 1, 1), _at(inner, 0, 1)]
    _rounded_polygon(draw, corners, r + grow, fill)


def _diamond(draw: ImageDraw.ImageDraw, box: _Box, grow: float, fill: _Rgba | int) -> None:
    r = (box[2] - box[0]) * 0.06
    inner = (box[0] + r, box[1] + r, box[2] - r, box[3] - r)
    tips = [_at(inner, 0.5, 0), _at(inner, 1, 0.5), _at(inner, 0.5, 1), _at(inner, 0, 0.5)]
    _rounded_polygon(draw, tips, r + grow, fill)


def _pill(draw: ImageDraw.ImageDraw, box: _Box, grow: float, fill: _Rgba | int) -> None:
    # A pill is a line segment grown by half its height; it sits low in the box, on the corner.
    half = (box[3] - box[1]) * 0.3
    ends = [_at(box, 0, 0.62), _at(box, 1, 0.62)]
    ends = [(ends[0][0] + half, ends[0][1]), (ends[1][0] - half, ends[1][1])]
    _rounded_polygon(draw, ends, half + grow, fill)


def _arrow(draw: ImageDraw.ImageDraw, box: _Box, grow: float, fill: _Rgba | int) -> None:
    r = (box[2] - box[0]) * 0.05
    inner = (box[0] + r, box[1] + r, box[2] - r, box[3] - r)
    outline = [
        _at(inner, 0.29, 0.0),
        _at(inner, 0.71, 0.0),
        _at(inner, 0.71, 0.45),
        _at(inner, 1.0, 0.45),
        _at(inner, 0.5, 1.0),
        _at(inner, 0.0, 0.45),
        _at(inner, 0.29, 0.45),
    ]
    _rounded_polygon(draw, outline, r + grow, fill)


# --- glyphs: what is drawn on the badge ---------------------------------------------------------------


def _stroke(box: _Box) -> float:
    """_Glyph line width: 0.16 of the badge, at least 1.5 output pixels so it survives at 16 px."""
    return max(1.5 * _SUPERSAMPLE, (box[2] - box[0]) * 0.16)


def _polyline(draw: ImageDraw.ImageDraw, points: Sequence[_Point], width: float, fill: _Rgba) -> None:
    """A line with round joints and round caps (Pillow's own caps are square and poke out)."""
    draw.line(list(points), fill=fill, width=round(width), joint="curve")
    for end in (points[0], points[-1]):
        _dot(draw, end, width / 2, fill)


def _dot(draw: ImageDraw.ImageDraw, centre: _Point, radius: float, fill: _Rgba | int) -> None:
    x, y = centre
    draw.ellipse(_inside(x - radius, y - radius, x + radius, y + radius), fill=fill)


def _nothing(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    """The arrow is the badge: no glyph on it."""


def _check(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    points = [_at(box, 0.27, 0.53), _at(box, 0.44, 0.70), _at(box, 0.74, 0.35)]
    _polyline(draw, points, _stroke(box), WHITE)


def _exclamation(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    # Thinner than the other glyphs: the triangle is narrow at the top, and the dot needs a clear gap.
    width = max(1.5 * _SUPERSAMPLE, (box[2] - box[0]) * 0.13)
    _polyline(draw, [_at(box, 0.5, 0.37), _at(box, 0.5, 0.56)], width, INK)
    _dot(draw, _at(box, 0.5, 0.79), width * 0.6, INK)


def _cross(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    width = _stroke(box)
    _polyline(draw, [_at(box, 0.31, 0.31), _at(box, 0.69, 0.69)], width, WHITE)
    _polyline(draw, [_at(box, 0.69, 0.31), _at(box, 0.31, 0.69)], width, WHITE)


def _three_dots(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    radius = max(0.75 * _SUPERSAMPLE, (box[2] - box[0]) * 0.085)
    for fx in (0.24, 0.5, 0.76):
        _dot(draw, _at(box, fx, 0.62), radius, WHITE)


def _question(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    side = box[2] - box[0]
    width = max(1.25 * _SUPERSAMPLE, side * 0.1)
    radius = side * 0.12 + width / 2  # the hook's centre line, so its inside stays open
    cx, cy = _at(box, 0.5, 0.22)
    cy += radius
    # The hook: from the left, over the top, down the right side, then a stem straight down.
    draw.arc(
        (cx - radius - width / 2, cy - radius - width / 2, cx + radius + width / 2, cy + radius + width / 2),
        180,
        450,
        fill=WHITE,
        width=round(width),
    )
    _dot(draw, (cx - radius, cy), width / 2, WHITE)  # round the hook's open end
    _polyline(draw, [(cx, cy + radius), (cx, cy + radius + width * 0.5)], width, WHITE)
    _dot(draw, _at(box, 0.5, 0.78), width * 0.65, WHITE)


def _no_entry(draw: ImageDraw.ImageDraw, box: _Box) -> None:
    side = box[2] - box[0]
    width = max(1.25 * _SUPERSAMPLE, side * 0.11)
    x0, y0, x1, y1 = box
    inset = side * 0.1
    draw.ellipse(_inside(x0 + inset, y0 + inset, x1 - inset, y1 - inset), outline=WHITE, width=round(width))
    # The slash runs top left to bottom right, as on a "no" sign, from one side of the ring to the other.
    reach = side / 2 - inset - width / 2
    cx, cy = _at(box, 0.5, 0.5)
    offset = reach * math.sqrt(0.5)
    draw.line([(cx - offset, cy - offset), (cx + offset, cy + offset)], fill=WHITE, width=round(width))


@dataclass(frozen=True, slots=True)
class _Badge:
    shape: _Shape  # the silhouette: the first thing that tells the states apart
    fill: _Rgba
    glyph: _Glyph  # drawn on the silhouette


_BADGES: Final[dict[TrayStatus, _Badge]] = {
    TrayStatus.OK: _Badge(_circle, GREEN, _check),
    TrayStatus.ATTENTION: _Badge(_triangle, AMBER, _exclamation),
    TrayStatus.BROKEN: _Badge(_square, RED, _cross),
    TrayStatus.CHECKING: _Badge(_pill, BLUE, _three_dots),
    TrayStatus.WORKING: _Badge(_arrow, BLUE, _nothing),
    TrayStatus.NO_DRIVER: _Badge(_circle, SLATE, _no_entry),
    TrayStatus.ERROR: _Badge(_diamond, SLATE, _question),
}

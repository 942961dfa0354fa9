"""The tray icons: one per state, told apart without colour, and the files in icons/ equal to the code.

Greyscale is the test for colour blindness: what differs in luminance differs for every kind of it.
Each image is put on a background first, because a transparent pixel has no luminance of its own.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
from PIL import IcoImagePlugin, Image, ImageChops, ImageStat

from torchdoctor.agent.tray.icons import MIN_SIZE, app_icon, status_image
from torchdoctor.agent.tray.status import TrayStatus

ICONS = Path(__file__).resolve().parents[2] / "icons"
SIZES = (16, 24, 32, 64, 256)
PAIRS = list(combinations(TrayStatus, 2))
# Task bar colours: light, dark, and a mid grey close to the orange's own luminance (the hard case).
BACKGROUNDS = {"light": (243, 243, 243), "dark": (32, 32, 32), "mid-grey": (128, 128, 128)}
# At 32 px the badge fills the lower right 20 x 20 px (icons.py: 0.625 of tray sizes).
BADGE_32 = (12, 12, 32, 32)
# The upper left quarter, which no badge reaches: the mark itself.
MARK_32 = (2, 2, 14, 14)


def grey(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """The image as a person without colour vision sees it on `background`."""
    canvas = Image.new("RGBA", image.size, (*background, 255))
    canvas.alpha_composite(image)
    return canvas.convert("L")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(a, b)).mean[0])


def silhouette(image: Image.Image) -> Image.Image:
    """Where the icon is opaque: the shape, with neither colour nor luminance."""
    return image.getchannel("A").point(lambda alpha: 255 if alpha >= 128 else 0)


def pixels_that_differ(a: Image.Image, b: Image.Image) -> int:
    return sum(ImageChops.difference(a, b).histogram()[1:])


def pair_id(pair: tuple[TrayStatus, TrayStatus]) -> str:
    return f"{pair[0].value}-{pair[1].value}"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("status", list(TrayStatus))
def test_every_state_renders_as_rgba_of_its_size(status: TrayStatus, size: int) -> None:
    image = status_image(status, size)
    assert image.mode == "RGBA"
    assert image.size == (size, size)
    low, high = image.getchannel("A").getextrema()
    assert (low, high) == (0, 255)  # transparent corners around an opaque mark


@pytest.mark.parametrize("size", SIZES)
def test_the_app_icon_is_the_mark_without_a_badge(size: int) -> None:
    image = app_icon(size)
    assert (image.mode, image.size) == ("RGBA", (size, size))
    # Without a badge the mark is symmetric: turned round, it is the same image.
    turned = image.transpose(Image.Transpose.ROTATE_180)
    assert mean_difference(grey(image, (128, 128, 128)), grey(turned, (128, 128, 128))) < 1


def test_the_cache_hands_out_copies_a_caller_may_change() -> None:
    first = status_image(TrayStatus.OK, 32)
    first.paste((0, 0, 0, 0), (0, 0, 32, 32))
    assert status_image(TrayStatus.OK, 32).getchannel("A").getextrema() == (0, 255)


def test_a_state_may_be_given_by_its_value() -> None:
    assert (
        status_image(TrayStatus("no-driver"), 16).tobytes()
        == status_image(TrayStatus.NO_DRIVER, 16).tobytes()
    )


def test_too_small_a_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        status_image(TrayStatus.OK, MIN_SIZE - 1)
    with pytest.raises(ValueError, match="at least"):
        app_icon(0)


@pytest.mark.parametrize("background", BACKGROUNDS.values(), ids=BACKGROUNDS.keys())
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_every_two_states_differ_in_greyscale(
    pair: tuple[TrayStatus, TrayStatus], background: tuple[int, int, int]
) -> None:
    a, b = (status_image(status, 32) for status in pair)
    # Over the whole 32 px icon, most of which is the same mark in every state.
    assert mean_difference(grey(a, background), grey(b, background)) >= 10
    # Over the badge: a quarter of the full range on average, a clear difference, not a shade.
    assert mean_difference(grey(a, background).crop(BADGE_32), grey(b, background).crop(BADGE_32)) >= 25


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_every_two_states_differ_in_shape_or_in_the_whole_mark(
    pair: tuple[TrayStatus, TrayStatus], size: int
) -> None:
    """The shape alone tells the badges apart, even at 16 px; `ok` and `no-driver` share the circle,
    and there the greyed mark does it, in luminance, well away from the badge."""
    a, b = (status_image(status, size) for status in pair)
    if set(pair) == {TrayStatus.OK, TrayStatus.NO_DRIVER}:
        left, top, right, bottom = (round(edge * size / 32) for edge in MARK_32)
        mark = (left, top, right, bottom)
        assert mean_difference(grey(a, (128, 128, 128)).crop(mark), grey(b, (128, 128, 128)).crop(mark)) >= 20
    else:
        # At least 5 % of the badge's square is opaque in one icon and clear in the other.
        badge_area = (size * 0.625) ** 2
        assert pixels_that_differ(silhouette(a), silhouette(b)) >= 0.05 * badge_area


def test_no_driver_greys_the_whole_mark() -> None:
    red, green, blue = status_image(TrayStatus.NO_DRIVER, 32).crop(MARK_32).convert("RGB").split()
    most = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    least = ImageChops.darker(ImageChops.darker(red, green), blue)
    assert highest_level(ImageChops.difference(most, least)) < 8  # no pixel has a hue


def test_icons_holds_exactly_one_status_png_per_state() -> None:
    shipped = sorted(path.name for path in ICONS.glob("status-*.png"))
    assert shipped == sorted(f"status-{status.value}.png" for status in TrayStatus)


@pytest.mark.parametrize("status", list(TrayStatus))
def test_the_shipped_status_png_is_what_the_code_draws(status: TrayStatus) -> None:
    """Run `python packaging/make_icons.py` when this fails after a change to the drawing."""
    with Image.open(ICONS / f"status-{status.value}.png") as shipped:
        drawn = status_image(status, shipped.width)
        assert shipped.size == (64, 64)
        assert_within_one_level(shipped.convert("RGBA"), drawn)


def test_the_shipped_app_icon_is_what_the_code_draws() -> None:
    with Image.open(ICONS / "torchdoctor.png") as shipped:
        assert shipped.size == (256, 256)
        assert_within_one_level(shipped.convert("RGBA"), app_icon(256))


@pytest.mark.parametrize("size", [16, 32])
def test_the_ico_holds_the_tray_sizes_each_drawn_for_its_size(size: int) -> None:
    with Image.open(ICONS / "torchdoctor.ico") as ico:
        assert isinstance(ico, IcoImagePlugin.IcoImageFile)
        assert {(16, 16), (32, 32), (256, 256)} <= ico.ico.sizes()
        # Drawn at this size, not scaled down from 256 px, which would blur the 16 px cross.
        assert_within_one_level(ico.ico.getimage((size, size)).convert("RGBA"), app_icon(size))


def assert_within_one_level(shipped: Image.Image, drawn: Image.Image) -> None:
    assert shipped.size == drawn.size
    worst = highest_level(ImageChops.difference(shipped, drawn))
    assert worst <= 1, f"icons/ differs from the drawing code by up to {worst} levels in a channel"


def highest_level(image: Image.Image) -> int:
    """The brightest value in any band (the histogram has 256 counts per band, one after the other)."""
    return max(index % 256 for index, count in enumerate(image.histogram()) if count)

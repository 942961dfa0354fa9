"""Writes icons/ from the drawing code in agent/tray/icons.py (the PNG/ICO files are committed).

`python packaging/make_icons.py` rewrites `icons/torchdoctor.png` (256 px), `icons/torchdoctor.ico`
(16 to 256 px) and one `icons/status-<state>.png` (64 px) per tray state, and removes status PNGs of
states that no longer exist. `tests/unit/test_tray_icons.py` fails when the files and the code differ,
so run this after any change to the drawing.

`--sheet PATH` also writes a contact sheet: every state at 16, 24, 32 and 64 px (and 16 px scaled up
without smoothing, to see the real pixels) on a light and a dark task bar colour, for looking at.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw

from torchdoctor.agent.tray.icons import app_icon, status_image
from torchdoctor.agent.tray.status import TrayStatus

ICONS: Final = Path(__file__).resolve().parents[1] / "icons"
STATUS_SIZE: Final = 64
ICO_SIZES: Final = (16, 20, 24, 32, 40, 48, 64, 256)  # 20 and 40: Windows at 125 % scaling
SHEET_SIZES: Final = (16, 24, 32, 64)
# Windows 11's light and dark task bars; a light grey and a near black cover most Linux panels too.
BACKGROUNDS: Final = ((243, 243, 243), (32, 32, 32))


def write_icons(folder: Path) -> list[Path]:
    """Writes every icon into `folder` and returns the paths written."""
    written = [folder / "torchdoctor.png", folder / "torchdoctor.ico"]
    app_icon(256).save(written[0])
    # Each size is drawn on its own (not scaled from 256 px), so the small ones keep their sharp edges.
    largest, *others = (app_icon(size) for size in reversed(ICO_SIZES))
    largest.save(written[1], sizes=[(s, s) for s in ICO_SIZES], append_images=others)
    wanted = {folder / f"status-{status.value}.png" for status in TrayStatus}
    for stale in sorted(set(folder.glob("status-*.png")) - wanted):
        stale.unlink()
        print(f"removed {stale.name}")
    for status in TrayStatus:
        path = folder / f"status-{status.value}.png"
        status_image(status, STATUS_SIZE).save(path)
        written.append(path)
    return written


def contact_sheet() -> Image.Image:
    """All states in rows; per background, the sheet sizes plus 16 px magnified 4x with NEAREST."""
    cell, margin, label = 72, 8, 90
    rows: list[TrayStatus | None] = [None, *TrayStatus]
    columns = len(SHEET_SIZES) + 1
    width = label + len(BACKGROUNDS) * columns * cell
    sheet = Image.new("RGB", (width, len(rows) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, status in enumerate(rows):
        top = row * cell
        draw.text((margin, top + cell // 2 - 6), "app" if status is None else status.value, fill=(0, 0, 0))
        for b, background in enumerate(BACKGROUNDS):
            left = label + b * columns * cell
            draw.rectangle((left, top, left + columns * cell - 1, top + cell - 1), fill=background)
            for c, size in enumerate((*SHEET_SIZES, 16)):
                image = app_icon(size) if status is None else status_image(status, size)
                if c == len(SHEET_SIZES):  # the last column: the 16 px icon's real pixels, magnified
                    image = image.resize((64, 64), Image.Resampling.NEAREST)
                x = left + c * cell + (cell - image.width) // 2
                y = top + (cell - image.height) // 2
                sheet.paste(image, (x, y), image)
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sheet", type=Path, metavar="PATH", help="also write a contact sheet PNG here")
    parser.add_argument("--out", type=Path, default=ICONS, help="the folder to write (default: icons/)")
    args = parser.parse_args(argv)
    for path in write_icons(args.out):
        print(f"wrote {path}")
    if args.sheet is not None:
        contact_sheet().save(args.sheet)
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

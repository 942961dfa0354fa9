"""Draws the icons shipped in icons/ (run once; the PNG/ICO files are committed).

`python packaging/make_icons.py`: an orange disc (PyTorch's colour) with a white medical cross,
plus status variants with a green, yellow or red badge, as the tray shows them.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ORANGE = (238, 76, 44, 255)
BADGES = {"ok": (46, 160, 67, 255), "warn": (210, 153, 34, 255), "broken": (207, 34, 46, 255)}


def draw(size: int, badge: tuple[int, int, int, int] | None) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    pad = size // 16
    d.ellipse((pad, pad, size - pad, size - pad), fill=ORANGE)
    arm, half = size // 7, size // 4
    c = size // 2
    d.rectangle((c - arm // 2, c - half, c + arm // 2, c + half), fill="white")
    d.rectangle((c - half, c - arm // 2, c + half, c + arm // 2), fill="white")
    if badge is not None:
        r = size // 4
        d.ellipse(
            (size - 2 * r - 1, size - 2 * r - 1, size - 1, size - 1),
            fill=badge,
            outline="white",
            width=max(1, size // 32),
        )
    return image


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "icons"
    big = draw(256, None)
    big.save(out / "torchdoctor.png")
    big.save(out / "torchdoctor.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (256, 256)])
    for name, colour in BADGES.items():
        draw(64, colour).save(out / f"status-{name}.png")


if __name__ == "__main__":
    main()

"""Fills the winget manifest templates (packaging/windows/winget/) for one built installer.

    python packaging/winget.py --installer dist/torchdoctor-0.1.0-setup.exe --url URL [--out DIR]

Writes the three manifest files with the version, the installer's download URL and its SHA-256,
ready for a pull request to microsoft/winget-pkgs (`winget validate DIR` checks them on Windows).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
TEMPLATES: Final = REPO / "packaging" / "windows" / "winget"
_PLACEHOLDER: Final = re.compile(r"\{\{(\w+)\}\}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().upper()  # as winget-pkgs writes it


def fill(text: str, values: dict[str, str]) -> str:
    """Every `{{NAME}}` replaced; KeyError names one without a value."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def write_manifests(out: Path, *, version: str, url: str, sha256: str) -> list[Path]:
    values = {"VERSION": version, "INSTALLER_URL": url, "INSTALLER_SHA256": sha256}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for template in sorted(TEMPLATES.glob("*.yaml")):
        path = out / template.name
        path.write_text(fill(template.read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(REPO / "packaging"))
    from freeze import project_version  # noqa: PLC0415 - a sibling script, not a package

    parser = argparse.ArgumentParser(description="Fill the winget manifests for a built installer.")
    parser.add_argument("--installer", type=Path, required=True, help="the built setup .exe")
    parser.add_argument("--url", required=True, help="where users download it (https)")
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "winget", help="output folder")
    args = parser.parse_args(argv)
    if not args.url.startswith("https://"):
        print("winget: the installer URL must be https", file=sys.stderr)
        return 2
    try:
        sha = sha256_of(args.installer)
    except OSError as exc:
        print(f"winget: cannot read {args.installer}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for path in write_manifests(args.out, version=project_version(), url=args.url, sha256=sha):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pyproject.toml lists every package folder: setuptools leaves an unlisted one out of the wheel without
a word, while the editable install the tests run on still finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FACES = {"agent": "torchdoctor.agent", "service": "torchdoctor.service", "icons": "torchdoctor.icons"}


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    on_disk = {
        ".".join([FACES[folder], *init.parent.relative_to(REPO / folder).parts])
        for folder in FACES
        for init in (REPO / folder).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk
    for package in setuptools["packages"]:  # each resolves through the one mapping per face
        face = package.split(".")[1]
        assert setuptools["package-dir"][f"torchdoctor.{face}"] == face

"""The built wheel carries the report's templates and script (package data, which an editable
install finds even when pyproject forgets to declare it)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_has_every_report_template(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("torchdoctor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    on_disk = sorted(p.name for p in (REPO / "agent" / "report" / "templates").iterdir())
    assert on_disk  # the templates exist in the tree...
    for name in on_disk:  # ...and every one is in the wheel
        assert f"torchdoctor/agent/report/templates/{name}" in names
    assert "torchdoctor/agent/report/render.py" in names

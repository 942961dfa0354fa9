"""A stream whose encoding cannot spell a path (Windows gives a redirect its ANSI code page, cp1252
on Western systems) must not end a command in an error: the CLI escapes what it cannot encode.

Reproduced here with PYTHONIOENCODING=cp1252; tests/windows runs the same under a real Windows
code page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.envs import make_venv


def envs(root: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "envs", "--env", str(root), "--no-discover", *extra],
        capture_output=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONIOENCODING="cp1252", NO_COLOR="1"),
    )


def test_json_names_a_path_cp1252_cannot_spell_exactly(tmp_path: Path) -> None:
    root = tmp_path / "环境-ümlaut"
    make_venv(root)
    proc = envs(root, "--json")
    assert proc.returncode == 0, proc.stderr
    # --json is UTF-8 whatever the code page (docs/contract.md): a script reads the exact path back.
    (listed,) = json.loads(proc.stdout.decode("utf-8"))
    assert listed["path"] == str(root)


def test_the_table_escapes_what_it_cannot_encode(tmp_path: Path) -> None:
    root = tmp_path / "环境"
    make_venv(root)
    proc = envs(root)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("cp1252")
    assert "\\u73af\\u5883" in out and "Traceback" not in proc.stderr.decode("cp1252")

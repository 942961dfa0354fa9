"""`torchdoctor report` through the real CLI: the fleet documents are written by the real
`check --json` over a real venv, and `--open` hands the page to a stand-in `xdg-open` on PATH
(the desktop is the boundary). Exit codes: 0 written, 1 written but not opened, 2 bad input."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import escape

from tests.support.envs import install_standins, make_venv
from tests.support.report_docs import HOSTILE
from tests.support.scenarios import NEW_DRIVER, OLD_DRIVER, family
from torchdoctor.service.bench import history
from torchdoctor.service.bench.run import BenchCheck, BenchResult


def torchdoctor(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv with a cu128 torch (stand-in wheels), under a folder named like markup."""
    root = tmp_path_factory.mktemp("envs") / HOSTILE / ".venv"
    root.parent.mkdir(parents=True)
    env = make_venv(root)
    install_standins(env, family("cu128"))
    return root


def _hardware(tmp_path: Path, name: str, content: Mapping[str, object]) -> Path:
    path = tmp_path / f"{name}.hw.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.fixture
def fleet(tmp_path: Path, venv: Path) -> Path:
    """Two machines' real `check --json` documents, one truncated and one from a future version."""
    folder = tmp_path / "fleet"
    folder.mkdir()
    for name, hw in (("ws-new-driver", NEW_DRIVER), ("ws-old-driver", OLD_DRIVER)):
        check = torchdoctor("check", "--json", "--hardware", str(_hardware(tmp_path, name, hw)),
                            "--no-discover", "--env", str(venv))  # fmt: skip
        assert check.returncode in (0, 1), check.stderr
        (folder / f"{name}.json").write_text(check.stdout, encoding="utf-8")
    whole = (folder / "ws-new-driver.json").read_text(encoding="utf-8")
    (folder / "ws-cut.json").write_text(whole[: len(whole) // 3], encoding="utf-8")
    (folder / "ws-future.json").write_text(
        json.dumps({**json.loads(whole), "schema_version": 2}), encoding="utf-8"
    )
    return folder


@pytest.mark.slow
def test_a_fleet_report_over_real_check_documents(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "fleet.html"
    result = torchdoctor("report", "--from", str(fleet), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Report written to {out} (")
    html = out.read_text(encoding="utf-8")
    assert "2 machines from 4 documents; 2 could not be read" in " ".join(html.split())
    assert "ws-new-driver" in html
    assert "ws-old-driver" in html
    assert "driver-too-old" in html  # the old driver breaks the cu128 build
    assert "the file looks truncated" in html
    assert "written by a newer torchdoctor (schema_version 2" in html
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.slow
def test_a_glob_given_unexpanded_works_as_on_windows_cmd(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.html"
    result = torchdoctor("report", "--from", str(fleet / "ws-*-driver.json"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 machines from 2 documents." in " ".join(out.read_text(encoding="utf-8").split())


def test_no_readable_document_is_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{", encoding="utf-8")
    out = tmp_path / "never.html"
    result = torchdoctor(
        "report", "--from", str(tmp_path), "--from", str(tmp_path / "nope"), "--out", str(out)
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("torchdoctor: no readable `check --json` document in --from: ")
    assert "a.json: not valid JSON" in result.stderr
    assert "nope: no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "x.json", "--no-discover"], "do not apply with --from"),
        (["--out", "-", "--open"], "--open needs a file to open"),
        (
            ["--from", "x.json", "--out", "/nonexistent-folder-td/r.html"],
            "cannot write the report in /nonexistent-folder-td",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "x.json").write_text(
        json.dumps({"schema_version": 1, "hardware": {}, "environments": [], "status": "ok"})
    )
    result = torchdoctor("report", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert result.stderr.count("\n") == 1


def _doc(tmp_path: Path) -> Path:
    path = tmp_path / "m1.json"
    path.write_text(
        json.dumps({"schema_version": 1, "hardware": {"gpus": []}, "environments": [], "status": "ok"})
    )
    return path


def test_out_dash_writes_the_page_to_stdout(tmp_path: Path) -> None:
    result = torchdoctor("report", "--from", str(_doc(tmp_path)), "--out", "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert result.stdout.rstrip().endswith("</html>")


def _fake_opener(tmp_path: Path, exit_code: int) -> dict[str, str]:
    """A stand-in `xdg-open` first on PATH that records what it was asked to open."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{tmp_path / "opened.txt"}"\nexit {exit_code}\n')
    opener.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.skipif(sys.platform != "linux", reason="xdg-open is the Linux side of the opener seam")
def test_open_hands_the_written_page_to_the_desktop(tmp_path: Path) -> None:
    result = torchdoctor("report", "--from", str(_doc(tmp_path)), "--open", "--out", "r.html",
                         cwd=tmp_path, env=_fake_opener(tmp_path, 0))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "opened.txt").read_text() == str(tmp_path / "r.html")


@pytest.mark.skipif(sys.platform != "linux", reason="xdg-open is the Linux side of the opener seam")
def test_a_page_that_cannot_be_opened_is_written_and_exits_1(tmp_path: Path) -> None:
    result = torchdoctor("report", "--from", str(_doc(tmp_path)), "--open", "--out", "r.html",
                         cwd=tmp_path, env=_fake_opener(tmp_path, 3))  # fmt: skip
    assert result.returncode == 1
    assert (tmp_path / "r.html").is_file()
    page = tmp_path / "r.html"
    assert result.stderr == (
        f"torchdoctor: the report could not be opened (cannot open {page}: {tmp_path / 'bin' / 'xdg-open'} "
        f"exited with 3); open {page} in a browser\n"
    )


@pytest.mark.slow
def test_this_machines_report_checks_it_and_shows_its_histories(
    venv: Path, tmp_path: Path, td_dirs: dict[str, Path]
) -> None:
    at = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    for day in range(3):
        bench = BenchResult("cuda:0", "NVIDIA GeForce RTX 4090", "2.7.1+cu128", True,
                             (BenchCheck("matmul", True, "ok"),), {"matmul_fp16_tflops": 150.0 + day}, 2.0)  # fmt: skip
        history.append(venv, bench, at=at + timedelta(days=day))
    (td_dirs["log"] / "fix-20260601T020000Z-.venv.log").write_text(
        f"torchdoctor fix {venv}\nplan: torch==2.7.1+cu128 from https://download.pytorch.org/whl/cu128\n"
        "verification: ok=True facts={}\ncheck: ok []\n",
        encoding="utf-8",
    )
    out = tmp_path / "me.html"
    hw = _hardware(tmp_path, "old", OLD_DRIVER)
    result = torchdoctor(
        "report", "--hardware", str(hw), "--no-discover", "--env", str(venv), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text(encoding="utf-8")
    text = " ".join(html.split())
    assert "driver-too-old" in text
    assert "520.61.05" in text
    assert "3 runs, 0 failed" in text
    assert "<svg" in html
    assert "installed" in text
    assert HOSTILE not in html
    # The copyable command, exactly as diagnose wrote it (shell-quoted), escaped once for HTML.
    command = f"torchdoctor fix --env {shlex.quote(str(venv))}"
    assert f"<code>{escape(command)}</code>" in html


def test_a_fleet_report_does_not_import_the_chart_library(tmp_path: Path) -> None:
    """A fleet page has no chart; pygal costs a fifth of a second to import (benchmarks/report.py)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "torchdoctor.agent", "report", "--from", str(_doc(tmp_path)),
         "--out", "-"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "jinja2" in imported  # the measurement works...
    assert "pygal" not in imported  # ...and the chart library stayed out

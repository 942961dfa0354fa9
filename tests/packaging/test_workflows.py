"""The GitHub workflow: valid YAML, the two jobs the project relies on, and the `windows` tests collected."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def load(path: Path) -> dict[Any, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    return doc


def runs(job: dict[str, Any]) -> list[str]:
    return [str(step["run"]) for step in job["steps"] if "run" in step]


def test_every_workflow_is_valid_yaml_with_jobs_and_triggers() -> None:
    paths = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert paths
    for path in paths:
        doc = load(path)
        # YAML 1.1 reads a bare `on` key as True.
        assert "on" in doc or True in doc, path
        for name, job in doc["jobs"].items():
            assert job["runs-on"] and job["steps"], f"{path.name}: {name}"
            assert job.get("timeout-minutes"), f"{path.name}: {name} has no timeout"


def test_the_linux_job_runs_exactly_ci_run_on_ubuntu() -> None:
    job = load(WORKFLOWS / "ci.yml")["jobs"]["linux"]
    assert job["runs-on"] == "ubuntu-latest"
    assert any(line.strip() == "bash .ci/run" for line in runs(job))


def test_the_windows_job_runs_the_tests_and_keeps_the_app_and_the_installer() -> None:
    job = load(WORKFLOWS / "ci.yml")["jobs"]["windows"]
    assert job["runs-on"] == "windows-latest"
    script = "\n".join(runs(job))
    pytest_lines = [line for line in script.splitlines() if "pytest" in line]
    assert pytest_lines
    # Nothing may deselect the tests this job exists to run.
    assert all("-m" not in line.split() and "windows" not in line for line in pytest_lines)
    assert "packaging\\freeze.py" in script and "packaging\\installer.py" in script
    uploads = [
        step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/upload-artifact")
    ]
    (upload,) = uploads
    paths = upload["with"]["path"]
    assert "dist/torchdoctor/" in paths and "setup.exe" in paths


def _windows_marked_in_source() -> set[str]:
    """`file::test` for every test function under tests/windows, read from the source (not pytest)."""
    found: set[str] = set()
    for path in sorted((REPO / "tests" / "windows").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.add(f"{path.relative_to(REPO).as_posix()}::{node.name}")
    return found


def test_every_test_marked_windows_is_collected() -> None:
    """Collected here too (where they skip), so an import error or a bad marker shows on Linux."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "windows", "tests/windows"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = {line.split("[", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    expected = _windows_marked_in_source()
    assert len(expected) >= 5
    assert collected == expected

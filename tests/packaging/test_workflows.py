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


def _is_windows_mark(node: ast.expr) -> bool:
    """`pytest.mark.windows`, also inside a list (`pytestmark = [pytest.mark.slow, pytest.mark.windows]`)."""
    if isinstance(node, ast.List | ast.Tuple):
        return any(_is_windows_mark(e) for e in node.elts)
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "windows"
        and ast.unparse(node) == "pytest.mark.windows"
    )


def _windows_marked_in_source() -> set[str]:
    """`file::test` for every test the source marks `windows` (module-wide or one by one), read with
    ast rather than pytest, anywhere under tests/ (other test files mark some of theirs too)."""
    found: set[str] = set()
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if "mark.windows" not in text:
            continue
        tree = ast.parse(text)
        module_wide = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and _is_windows_mark(node.value)
            for node in tree.body
        )
        rel = path.relative_to(REPO).as_posix()
        for node in tree.body:
            tests: list[tuple[str, list[ast.expr]]] = []
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                tests.append((node.name, node.decorator_list))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                tests += [
                    (f"{node.name}::{f.name}", [*node.decorator_list, *f.decorator_list])
                    for f in node.body
                    if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")
                ]
            for name, decorators in tests:
                if module_wide or any(_is_windows_mark(d) for d in decorators):
                    found.add(f"{rel}::{name}")
    return found


def test_every_test_marked_windows_is_collected() -> None:
    """Collected here too (where they skip), so an import error or a bad marker shows on Linux; the
    windows job then runs exactly these."""
    expected = _windows_marked_in_source()
    files = sorted({name.split("::", 1)[0] for name in expected})
    assert "tests/windows/test_windows_real.py" in files
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "windows",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = {line.split("[", 1)[0] for line in proc.stdout.splitlines() if "::" in line}
    assert len(expected) >= 7
    assert collected == expected

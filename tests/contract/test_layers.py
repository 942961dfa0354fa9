"""The import-linter contract in pyproject.toml is not vacuous: each rule catches the import it forbids.

`scripts/test` runs `lint-imports` on the real tree. Here the same configuration runs on a copy of
the tree with one forbidden import (or one unplaced module) added, and must name the broken contract.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = ("faces", "pipeline", "no-ui-in-service", "no-win10toast", "no-tests-in-code")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy laid out under the installed package names, the way the contract sees the real tree."""
    root = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("agent", "service", "icons"):
        shutil.copytree(REPO / folder, root / "torchdoctor" / folder, ignore=ignore)
    shutil.copytree(REPO / "tests", root / "tests", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def lint(root: Path, contract: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml"),
         "--contract", contract],
        cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def edit(tree: Path) -> Iterator[list[tuple[Path, bytes | None]]]:
    """Files changed by a test, restored (or removed) afterwards so the copy stays pristine."""
    changed: list[tuple[Path, bytes | None]] = []
    yield changed
    for path, before in reversed(changed):
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_the_tree_as_it_is_keeps_every_contract(tree: Path, contract: str) -> None:
    result = lint(tree, contract)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "says"),
    [
        ("service/facts/variants.py", "import torchdoctor.service.rules.fit", "pipeline",
         "torchdoctor.service.facts is not allowed to import torchdoctor.service.rules"),
        ("service/envs/tags.py", "import torchdoctor.service.probe.nvml", "pipeline",
         "torchdoctor.service.envs is not allowed to import torchdoctor.service.probe"),
        ("service/bench/history.py", "import torchdoctor.service.install.fix", "pipeline",
         "torchdoctor.service.bench is not allowed to import torchdoctor.service.install"),
        ("service/models.py", "import torchdoctor.service.facts.knowledge", "pipeline",
         "is not allowed to import torchdoctor.service.facts"),
        ("service/rules/fit.py", "import torchdoctor.agent.output", "faces",
         "torchdoctor.service is not allowed to import torchdoctor.agent"),
        ("service/rules/fit.py", "import torchdoctor.icons", "faces",
         "torchdoctor.service is not allowed to import torchdoctor.icons"),
        ("service/probe/hardware.py", "import PIL", "no-ui-in-service", "torchdoctor.service is not allowed to import PIL"),
        ("service/config.py", "import pystray", "no-ui-in-service", "is not allowed to import pystray"),
        ("agent/output.py", "import win10toast", "no-win10toast", "is not allowed to import win10toast"),
        ("service/paths.py", "import tests.support.hw", "no-tests-in-code", "is not allowed to import tests"),
    ],
)  # fmt: skip
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, edit: list[tuple[Path, bytes | None]], module: str, line: str, contract: str, says: str
) -> None:
    path = tree / "torchdoctor" / module
    edit.append((path, path.read_bytes()))
    path.write_text(path.read_text("utf-8") + f"\n{line}  # injected by the test\n", "utf-8")
    result = lint(tree, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert says in " ".join(result.stdout.split())


def test_a_module_outside_every_stage_breaks_the_pipeline(
    tree: Path, edit: list[tuple[Path, bytes | None]]
) -> None:
    stray = tree / "torchdoctor" / "service" / "stray.py"
    edit.append((stray, None))
    stray.write_text('"""Placed in no stage."""\n', "utf-8")
    result = lint(tree, "pipeline")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "torchdoctor.service.stray" in result.stdout

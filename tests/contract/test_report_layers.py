"""The `report-is-pure` contract: the page is rendered only from what it is given. It holds on the
tree as it is, and catches the imports it forbids (the same harness as test_layers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.test_layers import edit, lint, tree

__all__ = ["edit", "tree"]  # fixtures, used by name


def test_the_report_contract_holds(tree: Path) -> None:
    result = lint(tree, "report-is-pure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "says"),
    [
        ("agent/report/render.py", "import torchdoctor.service.paths",
         "torchdoctor.agent.report.render is not allowed to import torchdoctor.service"),
        ("agent/report/charts.py", "import torchdoctor.agent.tray.opener",
         "torchdoctor.agent.report.charts is not allowed to import torchdoctor.agent.tray"),
        ("agent/report/documents.py", "import torchdoctor.agent.commands.check",
         "torchdoctor.agent.report.documents is not allowed to import torchdoctor.agent.commands"),
    ],
)  # fmt: skip
def test_a_report_module_that_reaches_out_breaks_the_contract(
    tree: Path, edit: list[tuple[Path, bytes | None]], module: str, line: str, says: str
) -> None:
    path = tree / "torchdoctor" / module
    edit.append((path, path.read_bytes()))
    path.write_text(path.read_text("utf-8") + f"\n{line}  # injected by the test\n", "utf-8")
    result = lint(tree, "report-is-pure")
    assert result.returncode == 1, result.stdout + result.stderr
    assert says in " ".join(result.stdout.split())

"""Human output fits the terminal, and reads `~` for the home folder; `--json` does neither.

The real CLI in a child process, with COLUMNS=80 and COLUMNS=200 (`shutil.get_terminal_size`
reads it; a pipe without it is 80), HOME set to a temporary folder holding real venvs at a deep
path, and stand-in torch builds that produce findings (a CPU build on a GPU machine, a mixed
companion, a damaged install). No line may be wider than the terminal, except a line that is one
command to copy or one unbreakable token (a URL, a path): those are kept whole on their own line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.agent.output import display_width, strip_ansi

pytestmark = pytest.mark.slow

WIDTHS = (80, 200)
LONG_NOTE = (
    "this hardware file was written by hand for the output-width tests, and this note is long "
    "enough that it has to wrap on an 80-column terminal"
)
RTX_4090 = {
    "driver_version": "572.16",
    "cuda_driver_version": "12.8",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "memory_mib": 24564}],
    "notes": [LONG_NOTE],
}
BENCH_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"


@dataclass(frozen=True)
class Home:
    home: Path
    mixed: Path  # CPU torch on a GPU machine, with a CUDA torchvision
    damaged: Path  # torch/version.py deleted: torch-unreadable
    hardware: Path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = tmp_path_factory.mktemp("width-home")
    deep = home / "work" / "clients" / "a-rather-long-client-name" / "image-segmentation-experiments"
    mixed = make_venv(deep / "2026-spring" / ".venv")
    install_standins(mixed, [StandIn("torch", "2.5.1+cpu"), StandIn("torchvision", "0.20.1+cu124")])
    damaged = make_venv(deep / "an-environment-someone-interrupted" / ".venv")
    install_standins(damaged, [StandIn("torch", "2.7.1+cu128", cuda="12.8")])
    (damaged.site_packages[0] / "torch" / "version.py").unlink()
    hardware = home / "hw.json"
    hardware.write_text(json.dumps(RTX_4090))
    return Home(home, mixed.root, damaged.root, hardware)


def cli(
    home: Home, columns: int, *args: str | Path, colour: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home.home), COLUMNS=str(columns))
    env.pop("NO_COLOR" if colour else "FORCE_COLOR", None)
    env.update({"FORCE_COLOR": "1"} if colour else {"NO_COLOR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


_BY_HAND = re.compile(r"(?:by hand|optional|build): (.+)$")


def commands_in(texts: list[str]) -> set[str]:
    """The commands a person is told to run: `backtick spans` and what follows "by hand: "."""
    found: set[str] = set()
    for text in texts:
        found.update(re.findall(r"`[^`]*`", text))
        found.update(m.group(1) for m in [_BY_HAND.search(text)] if m)
    return found


def assert_fits(output: str, columns: int, commands: frozenset[str] | set[str] = frozenset()) -> None:
    for line in output.splitlines():
        if display_width(line) <= columns:
            continue
        token = strip_ansi(line).strip().rstrip(",.;")
        assert " " not in token or token in commands, f"wider than {columns}: {line!r}"


def fix_texts(doc: dict[str, object]) -> list[str]:
    envs = doc["environments"]
    assert isinstance(envs, list)
    return [f["fix"] for e in envs for f in e["findings"]]


# --- check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", WIDTHS)
def test_check_fits_the_terminal_and_shows_home_as_tilde(home: Home, columns: int) -> None:
    args = ("check", "--no-discover", "--hardware", home.hardware, "--env", home.mixed, "--env", home.damaged)
    doc = json.loads(cli(home, columns, *args, "--json").stdout)
    fixes = fix_texts(doc)
    assert {f["code"] for e in doc["environments"] for f in e["findings"]} >= {
        "cpu-build-with-gpu",
        "torch-unreadable",
    }
    for colour in (False, True):
        proc = cli(home, columns, *args, colour=colour)
        assert proc.returncode == 1, proc.stderr
        assert ("\033[" in proc.stdout) is colour
        assert_fits(proc.stdout + proc.stderr, columns, commands_in(fixes))
    text = cli(home, columns, *args).stdout
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("~/") and line.rstrip().endswith("broken")]
    assert len(rows) == 2, text
    if columns == 80:
        assert all("…" in row for row in rows)  # the deep path shortened in the middle
        assert any(line.startswith(" " * 8) and not line.lstrip().startswith("fix:") for line in lines)
    else:
        assert rows[0].startswith("~/work/clients/a-rather-long-client-name/") and "…" not in text
    # Headings are whole; commands keep the real path (a `~` in quotes would not expand).
    assert f"~/{home.mixed.relative_to(home.home)}" in lines
    assert f"`torchdoctor fix --env {home.mixed}`" in text
    for span in re.findall(r"`[^`]*`", text):
        assert "~" not in span
    for command in commands_in(fixes):
        assert command in text  # whole, never cut across lines


def test_check_json_is_the_same_at_any_width_and_keeps_the_home_path(home: Home) -> None:
    args = ("check", "--json", "--no-discover", "--hardware", home.hardware, "--env", home.mixed)
    narrow, wide = (cli(home, c, *args).stdout for c in WIDTHS)
    assert narrow == wide
    doc = json.loads(narrow)
    assert doc["environments"][0]["path"] == str(home.mixed)
    assert "~/" not in narrow


# --- envs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", WIDTHS)
def test_envs_fits_and_shows_home_as_tilde(home: Home, columns: int) -> None:
    args = ("envs", "--no-discover", "--env", home.mixed, "--env", home.damaged)
    proc = cli(home, columns, *args)
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout + proc.stderr, columns)
    rows = proc.stdout.splitlines()[1:3]
    assert all(row.startswith("~/") and row.split()[1:3] == ["venv", rows[0].split()[2]] for row in rows)
    assert ("…" in proc.stdout) is (columns == 80)
    assert str(home.home) not in proc.stdout
    narrow, wide = (cli(home, c, *args, "--json").stdout for c in WIDTHS)
    assert narrow == wide
    assert [e["path"] for e in json.loads(narrow)] == [str(home.mixed), str(home.damaged)]


# --- hardware ------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", WIDTHS)
def test_hardware_fits(home: Home, columns: int) -> None:
    proc = cli(home, columns, "hardware", "--hardware", home.hardware)
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout, columns)
    joined = " ".join(line.strip() for line in proc.stdout.splitlines())
    assert LONG_NOTE in joined


# --- plan ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    root = tmp_path_factory.mktemp("width-index")
    publish(
        root,
        [StandIn("torch", "2.5.1+cu124", cuda="12.4"), StandIn("torchvision", "0.20.1+cu124")],
        "cu124",
    )
    with IndexServer(root) as server:
        yield server


@pytest.mark.parametrize("columns", WIDTHS)
def test_plan_fits_and_shows_home_as_tilde(home: Home, index: IndexServer, columns: int) -> None:
    args = ("plan", "--env", home.mixed, "--hardware", home.hardware, "--index-base", index.url)
    proc = cli(home, columns, *args)
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout + proc.stderr, columns)
    assert "~/work/" in proc.stdout and str(home.home) not in proc.stdout
    assert "torch: 2.5.1+cpu -> 2.5.1+cu124" in proc.stdout
    narrow, wide = (json.loads(cli(home, c, *args, "--json").stdout) for c in WIDTHS)
    # The index notes (variants that could not be read) come in the order the fetches finish.
    assert {**narrow, "notes": sorted(narrow["notes"])} == {**wide, "notes": sorted(wide["notes"])}
    assert narrow["environment"] == str(home.mixed)


# --- bench ---------------------------------------------------------------------------------------

_RENDER = """
import json, sys
from pathlib import Path
from torchdoctor.agent.commands.bench import render
from torchdoctor.service.bench.run import load_peaks, verdict

raw = json.loads(Path(sys.argv[1]).read_text())
print("\\n".join(render(verdict(raw, seconds=1.0, peaks=load_peaks()), env_root=Path(sys.argv[2]), colour=False)))
"""


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize(
    "fixture",
    ["h100-cu130-pass-synthetic.json", "import-winerror126-standin.json", "cpu-torch-2.13.0-real.json"],
)
def test_bench_summary_fits(home: Home, columns: int, fixture: str) -> None:
    env = dict(os.environ, HOME=str(home.home), COLUMNS=str(columns), NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-c", _RENDER, str(BENCH_FIXTURES / fixture), str(home.mixed)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert_fits(proc.stdout, columns)
    assert f"environment: ~/{home.mixed.relative_to(home.home)}" in " ".join(
        line.strip() for line in proc.stdout.splitlines()
    )

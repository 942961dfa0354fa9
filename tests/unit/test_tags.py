"""Target-environment wheel tags: from recorded facts (pure) and from the real interpreters here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.tags import Tag, sys_tags
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from torchdoctor.service import proc
from torchdoctor.service.envs.tags import (
    FACTS_MARKER,
    InterpreterFacts,
    InterpreterProbeError,
    interpreter_facts,
    platform_tags_for,
    tags_for,
)
from torchdoctor.service.errors import InterpreterError, SubprocessTimeoutError

WIN_312 = InterpreterFacts(
    executable="C:\\Users\\ana\\proj\\.venv\\Scripts\\python.exe",
    version=(3, 12, 4),
    version_text="3.12.4",
    implementation="cpython",
    platform="win-amd64",
    system="Windows",
    machine="AMD64",
    py_version_nodot="312",
    ext_suffix=".cp312-win_amd64.pyd",
    windows_arch="AMD64",
)
LINUX_310 = InterpreterFacts(
    executable="/home/ana/venv/bin/python",
    version=(3, 10, 13),
    version_text="3.10.13",
    implementation="cpython",
    platform="linux-x86_64",
    system="Linux",
    machine="x86_64",
    py_version_nodot="310",
    ext_suffix=".cpython-310-x86_64-linux-gnu.so",
    glibc="2.28",
)
LINUX_313T = replace(
    LINUX_310,
    version=(3, 13, 1),
    version_text="3.13.1",
    py_version_nodot="313",
    abiflags="t",
    gil_disabled=True,
    ext_suffix=".cpython-313t-x86_64-linux-gnu.so",
    glibc="2.35",
)
AARCH64_312 = replace(
    LINUX_310,
    version=(3, 12, 3),
    version_text="3.12.3",
    platform="linux-aarch64",
    machine="aarch64",
    py_version_nodot="312",
    ext_suffix=".cpython-312-aarch64-linux-gnu.so",
    glibc="2.35",
)
MAC_312 = InterpreterFacts(
    executable="/Users/ana/venv/bin/python",
    version=(3, 12, 4),
    version_text="3.12.4",
    implementation="cpython",
    platform="macosx-11.0-arm64",
    system="Darwin",
    machine="arm64",
    py_version_nodot="312",
    ext_suffix=".cpython-312-darwin.so",
    mac_version="14.5",
)


def strs(tags: Sequence[Tag]) -> list[str]:
    return [str(t) for t in tags]


def installs(filename: str, tags: Sequence[Tag]) -> bool:
    return bool(parse_wheel_filename(filename)[3] & frozenset(tags))


def py_versions(minor: int) -> list[str]:
    """packaging's order of pure-Python versions: py312, py3, py311 ... py30."""
    return [f"py3{minor}", "py3", *[f"py3{m}" for m in range(minor - 1, -1, -1)]]


def test_windows_amd64_cpython_312_gets_exactly_pips_tags() -> None:
    plat = "win_amd64"
    expected = [
        f"cp312-cp312-{plat}",
        f"cp312-abi3-{plat}",
        f"cp312-none-{plat}",
        *[f"cp3{m}-abi3-{plat}" for m in range(11, 1, -1)],
        *[f"{py}-none-{plat}" for py in py_versions(12)],
        "cp312-none-any",
        *[f"{py}-none-any" for py in py_versions(12)],
    ]
    assert strs(tags_for(WIN_312)) == expected
    assert len(expected) == 42
    assert installs("torch-2.7.1+cu128-cp312-cp312-win_amd64.whl", tags_for(WIN_312))
    assert not installs("torch-2.7.1+cu128-cp311-cp311-win_amd64.whl", tags_for(WIN_312))
    assert not installs("torch-2.7.1+cu128-cp312-cp312-manylinux_2_28_x86_64.whl", tags_for(WIN_312))


def test_linux_glibc_228_platforms_walk_down_to_manylinux1_with_legacy_aliases() -> None:
    platforms = platform_tags_for(LINUX_310)
    assert platforms[:3] == ["linux_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64"]
    assert platforms[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
    # each legacy name follows the manylinux_2_N tag it is an alias of
    assert platforms[platforms.index("manylinux_2_17_x86_64") + 1] == "manylinux2014_x86_64"
    assert platforms[platforms.index("manylinux_2_12_x86_64") + 1] == "manylinux2010_x86_64"
    assert "manylinux_2_29_x86_64" not in platforms
    assert "manylinux_2_4_x86_64" not in platforms
    assert not any(p.startswith("musllinux") for p in platforms)
    assert len(platforms) == 1 + 24 + 3


def test_linux_glibc_228_cpython_310_takes_manylinux_2_28_torch_but_not_2_34() -> None:
    tags = tags_for(LINUX_310)
    assert strs(tags)[:2] == ["cp310-cp310-linux_x86_64", "cp310-cp310-manylinux_2_28_x86_64"]
    assert installs("torch-2.7.1+cu128-cp310-cp310-manylinux_2_28_x86_64.whl", tags)
    assert installs("torch-2.1.1-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", tags)
    assert installs("torchaudio-2.11.1+cu128-py3-none-manylinux_2_28_x86_64.whl", tags)
    assert not installs("torch-2.9.0+cu128-cp310-cp310-manylinux_2_34_x86_64.whl", tags)
    assert not installs("torch-2.7.1+cu128-cp310-cp310-manylinux_2_28_aarch64.whl", tags)
    assert not installs("torch-2.7.1+cu128-cp311-cp311-manylinux_2_28_x86_64.whl", tags)


def test_free_threaded_313t_takes_only_cp313t_wheels_and_no_abi3() -> None:
    tags = tags_for(LINUX_313T)
    assert str(tags[0]) == "cp313-cp313t-linux_x86_64"
    assert installs("torch-2.7.0+cu128-cp313-cp313t-manylinux_2_28_x86_64.whl", tags)
    assert not installs("torch-2.7.0+cu128-cp313-cp313-manylinux_2_28_x86_64.whl", tags)
    assert not any(t.abi in ("cp313", "abi3") for t in tags)  # PEP 703: no stable ABI for 3.13t
    assert installs("torchaudio-2.11.1-py3-none-manylinux_2_28_x86_64.whl", tags)


def test_aarch64_stops_at_manylinux2014() -> None:
    platforms = platform_tags_for(AARCH64_312)
    assert platforms[:2] == ["linux_aarch64", "manylinux_2_35_aarch64"]
    assert platforms[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert "manylinux_2_16_aarch64" not in platforms
    assert "manylinux2010_aarch64" not in platforms
    tags = tags_for(AARCH64_312)
    assert installs("torch-2.7.0+cu128-cp312-cp312-manylinux_2_28_aarch64.whl", tags)
    assert not installs("torch-2.7.0+cu128-cp312-cp312-manylinux_2_28_x86_64.whl", tags)


def test_macos_arm64_walks_major_versions_and_universal2() -> None:
    platforms = platform_tags_for(MAC_312)
    assert platforms[:2] == ["macosx_14_0_arm64", "macosx_14_0_universal2"]
    assert "macosx_11_0_arm64" in platforms
    assert "macosx_10_16_universal2" in platforms
    assert "macosx_10_16_arm64" not in platforms  # no arm64 Macs before 11
    assert "macosx_15_0_arm64" not in platforms
    tags = tags_for(MAC_312)
    assert installs("torch-2.7.1-cp312-none-macosx_11_0_arm64.whl", tags)
    assert not installs("torch-2.7.1-cp312-none-macosx_10_9_x86_64.whl", tags)


def test_32_bit_interpreter_on_64_bit_linux_uses_i686() -> None:
    facts = replace(LINUX_310, pointer_bits=32)
    platforms = platform_tags_for(facts)
    assert platforms[0] == "linux_i686"
    assert "manylinux_2_28_i686" in platforms
    assert not any(p.endswith("x86_64") for p in platforms)


def test_musl_linux_gets_musllinux_and_no_manylinux() -> None:
    facts = replace(LINUX_310, glibc=None, musl="1.2.4")
    assert platform_tags_for(facts) == [
        "linux_x86_64",
        "musllinux_1_2_x86_64",
        "musllinux_1_1_x86_64",
        "musllinux_1_0_x86_64",
    ]


def test_old_pythons_and_debug_builds_get_their_abi_flags() -> None:
    py37 = replace(LINUX_310, version=(3, 7, 16), version_text="3.7.16", py_version_nodot="37")
    assert str(tags_for(py37)[0]) == "cp37-cp37m-linux_x86_64"
    debug = replace(LINUX_310, debug=True)
    assert [t.abi for t in tags_for(debug)[:2]] == ["cp310d", "cp310d"]
    assert "cp310-cp310-linux_x86_64" in strs(tags_for(debug))


def test_pypy_gets_its_own_abi_and_pp3_none_any() -> None:
    pypy = replace(
        LINUX_310,
        implementation="pypy",
        py_version_nodot="310",
        ext_suffix=".pypy310-pp73-x86_64-linux-gnu.so",
    )
    tags = strs(tags_for(pypy))
    assert tags[0] == "pp310-pypy310_pp73-linux_x86_64"
    assert "pp3-none-any" in tags
    assert not any(t.startswith("cp") for t in tags)


# --- interpreter_facts ----------------------------------------------------------------------------


class FakeRun:
    """Stands in for proc.run at the subprocess boundary and remembers what it was asked."""

    def __init__(self, result: proc.Completed | BaseException) -> None:
        self.result = result
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, argv: Sequence[str | Path], *, timeout: float) -> proc.Completed:
        self.calls.append(([str(a) for a in argv], timeout))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def completed(stdout: str = "", stderr: str = "", rc: int = 0) -> proc.Completed:
    return proc.Completed(("python",), rc, stdout, stderr)


def facts_line(**overrides: object) -> str:
    data: dict[str, object] = {
        "executable": "/x/python",
        "version": [3, 8, 18],
        "version_text": "3.8.18",
        "implementation": "cpython",
        "py_version_nodot": "38",
        "abiflags": "",
        "gil_disabled": False,
        "debug": False,
        "pymalloc": True,
        "ext_suffix": ".cpython-38-x86_64-linux-gnu.so",
        "platform": "linux-x86_64",
        "system": "Linux",
        "machine": "x86_64",
        "pointer_bits": 64,
        "glibc": "2.36",
        "musl": None,
        "mac_version": None,
        "windows_arch": None,
    }
    data.update(overrides)
    return FACTS_MARKER + json.dumps(data) + "\n"


def test_facts_are_read_from_the_marked_line_with_isolated_mode_and_a_timeout() -> None:
    run = FakeRun(completed(stdout="sitecustomize says hi\n" + facts_line()))
    facts = interpreter_facts(Path("/x/python"), run=run, timeout=7.0)
    assert facts.version == (3, 8, 18)
    assert facts.glibc == "2.36"
    (argv, timeout), *_ = run.calls
    assert argv[:3] == ["/x/python", "-I", "-c"]
    assert timeout == 7.0


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (completed(stderr="SyntaxError: invalid syntax\n", rc=1), "SyntaxError: invalid syntax"),
        (completed(stdout="Python 2.7.18\n"), "did not describe itself"),
        (completed(stdout=FACTS_MARKER + "{not json\n"), "cannot read"),
        (completed(stdout=facts_line(version="3.8")), "bad 'version'"),
        (completed(stdout=facts_line(gil_disabled="no")), "bad 'gil_disabled'"),
        (FileNotFoundError(2, "No such file or directory"), "Could not start"),
        (completed(stderr="Unknown option: -I\nTry `python -h' for more information.\n", rc=2), "too old"),
    ],
)
def test_facts_failures_are_one_readable_error(result: proc.Completed | BaseException, message: str) -> None:
    with pytest.raises(InterpreterProbeError, match=message) as info:
        interpreter_facts(Path("/x/python"), run=FakeRun(result))
    assert "/x/python" in str(info.value)


def test_a_hung_interpreter_is_an_interpreter_error_naming_it_and_the_wait() -> None:
    run = FakeRun(SubprocessTimeoutError("python did not finish within 4 s", hint="python -I -c ..."))
    with pytest.raises(InterpreterError) as info:
        interpreter_facts(Path("/x/python"), run=run, timeout=4.0)
    assert str(info.value) == "The interpreter /x/python did not answer within 4 s."
    assert info.value.code == "interpreter-failed"
    assert info.value.hint is not None
    assert "/x/python --version" in info.value.hint
    assert "-c" not in info.value.hint


# --- the real interpreters on this machine ------------------------------------------------------


def find_python(minor: str) -> Path | None:
    """A real `python3.X` (pyenv's versions folder first: its shims refuse versions not selected)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(root.glob(f"{minor}.*/bin/python{minor}"), reverse=True):
        if candidate.is_file():
            return candidate
    return None


# Run inside the target: packaging if it has one, else pip's vendored copy (every pip has it).
SYS_TAGS_SCRIPT = """
import json
try:
    from packaging import tags
except ImportError:
    from pip._vendor.packaging import tags
try:
    from packaging import __version__ as version
except ImportError:
    from pip._vendor.packaging import __version__ as version
print(json.dumps({"version": version, "tags": [str(t) for t in tags.sys_tags()]}))
"""


@pytest.mark.parametrize("minor", ["3.8", "3.10", "3.11", "3.12", "3.13"])
def test_real_interpreter_facts_agree_with_sys_tags_inside_it(minor: str, tmp_path: Path) -> None:
    python = find_python(minor)
    if python is None:
        pytest.skip(f"no python{minor} on this machine")
    facts = interpreter_facts(python)
    assert f"{facts.version[0]}.{facts.version[1]}" == minor
    theirs = subprocess.run(
        [python, "-I", "-c", SYS_TAGS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    answer = json.loads(theirs.stdout)
    expected = answer["tags"]
    if Version(answer["version"]) < Version("22"):
        # pip 23's vendored packaging 21.3 predates `cpXY-none-any` in sys_tags (newer ones have it).
        expected.append(f"cp{facts.version_nodot}-none-any")
    ours = strs(tags_for(facts))
    # Sets, not order: the packaging inside the target may be older (pip vendors 21.3 or 24.1,
    # which put linux_* after manylinux); the order is checked against our own packaging below.
    assert set(ours) == set(expected)
    assert len(ours) == len(expected)


def test_our_own_interpreter_matches_sys_tags_in_order() -> None:
    facts = interpreter_facts(Path(sys.executable))
    ours, theirs = strs(tags_for(facts)), strs(list(sys_tags()))
    if Version(version("packaging")) < Version("26.3"):
        # Older packaging ranks manylinux before linux_*; the set is the same.
        assert sorted(ours) == sorted(theirs)
    else:
        assert ours == theirs

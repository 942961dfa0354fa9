"""Reading compiled GPU architectures from a torch library without importing it."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.support.envs import site_packages_env, unpack_standin
from tests.support.hw import RTX_4090, env, hardware
from tests.support.remote_zip import RangeFile, reachable
from tests.support.standin import StandIn
from torchdoctor.service.envs.archscan import parse_arch_flags, read_arch_flags, scan_library
from torchdoctor.service.envs.builds import read_build
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.models import ComputeCapability
from torchdoctor.service.rules.diagnose import diagnose

KN = load_knowledge(Path("/nonexistent"))
REAL_2_14_1 = Path("/opt/pypi-more/files/torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl")


def _binary(flags: bytes) -> bytes:
    # Flags as the linker leaves them: a NUL-terminated literal among other strings and code.
    return (
        b"\x7fELF\x02\x01"
        + bytes(range(256)) * 40
        + b"cudaGetDevice\x00sm_arch\x00"
        + flags
        + b"\x00"
        + b"\x90" * 5000
    )


def test_parse_arch_flags_splits_sass_and_ptx() -> None:
    arch = parse_arch_flags("sm_75 sm_80 sm_120 compute_120", "x")
    assert arch is not None
    assert arch.codes == (ComputeCapability(7, 5), ComputeCapability(8, 0), ComputeCapability(12, 0))
    assert arch.ptx == ComputeCapability(12, 0)
    assert parse_arch_flags("compute_90", "x") is None


def test_scan_finds_the_longest_run_in_a_binary(tmp_path: Path) -> None:
    lib = tmp_path / "libtorch_python.so"
    lib.write_bytes(_binary(b"sm_75 sm_80 sm_86 sm_90 sm_100 sm_120") + b"use sm_90 here\x00")
    assert scan_library(lib) == "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"
    empty = tmp_path / "cpu.so"
    empty.write_bytes(_binary(b"no flags in a CPU build"))
    assert scan_library(empty) is None


def test_results_are_cached_by_file_identity(tmp_path: Path, td_dirs: dict[str, Path]) -> None:
    torch_dir = tmp_path / "torch"
    (torch_dir / "lib").mkdir(parents=True)
    lib = torch_dir / "lib" / "libtorch_python.so"
    lib.write_bytes(_binary(b"sm_80 sm_90"))
    first = read_arch_flags(torch_dir)
    cache = json.loads((td_dirs["cache"] / "arch-flags.json").read_text())
    assert list(cache["entries"].values()) == ["sm_80 sm_90"]
    assert first is not None and first.codes == (ComputeCapability(8, 0), ComputeCapability(9, 0))
    lib.write_bytes(_binary(b"sm_100 sm_120 sm_121"))  # a reinstall: new size and mtime
    second = read_arch_flags(torch_dir)
    assert second is not None and max(second.codes) == ComputeCapability(12, 1)


def test_an_unknown_release_is_judged_by_its_own_library(tmp_path: Path) -> None:
    """2.99 is not in the data: the inferred cu130 list would cover an RTX 4090; the library does not."""
    e = site_packages_env(tmp_path)
    lib = _binary(b"sm_90 sm_100 sm_120").decode("latin-1")
    unpack_standin(e, StandIn("torch", "2.99.0+cu130", cuda="13.0"))
    (e.site_packages[0] / "torch" / "lib").mkdir()
    (e.site_packages[0] / "torch" / "lib" / "libtorch_python.so").write_bytes(lib.encode("latin-1"))
    reading = read_build(e, KN)
    assert reading is not None and reading.arch is not None
    hw = hardware("580.95.05", "13.0", RTX_4090)
    findings = diagnose(env(), reading, hw, KN)
    assert [f.code.value for f in findings] == ["gpu-arch-unsupported"]
    assert "sm_90, sm_100, sm_120" in findings[0].message


def test_a_known_release_is_not_scanned(tmp_path: Path) -> None:
    e = site_packages_env(tmp_path)
    unpack_standin(e, StandIn("torch", "2.7.1+cu128", cuda="12.8"))
    (e.site_packages[0] / "torch" / "lib").mkdir()
    (e.site_packages[0] / "torch" / "lib" / "libtorch_python.so").write_bytes(_binary(b"sm_90"))
    reading = read_build(e, KN)
    assert reading is not None and reading.arch is None


@pytest.mark.skipif(not REAL_2_14_1.exists(), reason="the real torch 2.14.1 wheel is not on this machine")
def test_the_real_2_14_1_library_holds_its_arch_list(tmp_path: Path) -> None:
    with zipfile.ZipFile(REAL_2_14_1) as zf, zf.open("torch/lib/libtorch_python.so") as src:
        (tmp_path / "torch" / "lib").mkdir(parents=True)
        with (tmp_path / "torch" / "lib" / "libtorch_python.so").open("wb") as dst:
            shutil.copyfileobj(src, dst)
    arch = read_arch_flags(tmp_path / "torch")
    assert arch is not None
    assert [str(c) for c in arch.codes] == ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0"]
    assert arch.ptx is None


# A real Windows CUDA wheel on PyTorch's index; only its torch_python.dll is read (range requests).
WINDOWS_CU128_WHEEL = "https://download.pytorch.org/whl/cu128/torch-2.7.1%2Bcu128-cp312-cp312-win_amd64.whl"


@pytest.mark.slow
def test_the_real_windows_cuda_wheels_torch_python_dll_holds_its_arch_list(tmp_path: Path) -> None:
    why_not = reachable(WINDOWS_CU128_WHEEL)
    if why_not is not None:
        pytest.skip(f"the real Windows wheel cannot be read: {why_not}")
    remote = RangeFile(WINDOWS_CU128_WHEEL)
    with zipfile.ZipFile(remote) as zf, zf.open("torch/lib/torch_python.dll") as src:
        (tmp_path / "torch" / "lib").mkdir(parents=True)
        with (tmp_path / "torch" / "lib" / "torch_python.dll").open("wb") as dst:
            shutil.copyfileobj(src, dst)
    assert remote.fetched < remote.size // 4  # the member and the directory, not the wheel
    arch = read_arch_flags(tmp_path / "torch")
    assert arch is not None
    # cu128 builds are the first with Blackwell (sm_120) and still cover Ampere (sm_80).
    assert {"8.0", "12.0"} <= {str(c) for c in arch.codes}

"""Untrusted files end in one sentence: FIFOs, devices, huge or deeply nested files, zip bombs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from torchdoctor.service import boundedio
from torchdoctor.service.boundedio import BoundedReadError
from torchdoctor.service.envs.builds import wheel_requirements
from torchdoctor.service.errors import EXIT_BAD_INPUT, HardwareFileError, KnowledgeError
from torchdoctor.service.facts.knowledge import load_knowledge
from torchdoctor.service.probe.hardware import load_hardware_file

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


def _finishes(func: object) -> BaseException | None:
    """Run `func` in a thread and return what it raised; fail the test if it is still blocked."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            func()  # type: ignore[operator]
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "reading blocked (a FIFO opened for reading waits for a writer)"
    return raised[0] if raised else None


@needs_fifo
def test_a_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "hw.json"
    os.mkfifo(fifo)
    raised = _finishes(lambda: boundedio.read_bytes(fifo, what="hardware file"))
    assert isinstance(raised, BoundedReadError)
    assert str(raised) == f"hardware file {fifo} is not a regular file (a device, pipe or socket)"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_not_read_at_all() -> None:
    with pytest.raises(BoundedReadError, match="not a regular file"):
        boundedio.read_bytes(Path("/dev/zero"), what="file")


def test_a_file_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert boundedio.read_bytes(path, limit=1000) == b"x" * 1000
    with pytest.raises(BoundedReadError, match="larger than 999 bytes"):
        boundedio.read_bytes(path, limit=999)


def test_missing_and_folder_say_so(tmp_path: Path) -> None:
    with pytest.raises(BoundedReadError, match="does not exist"):
        boundedio.read_bytes(tmp_path / "nope")
    with pytest.raises(BoundedReadError, match="is a folder"):
        boundedio.read_bytes(tmp_path)


def test_the_callers_error_class_keeps_its_code(tmp_path: Path) -> None:
    with pytest.raises(HardwareFileError) as caught:
        boundedio.read_bytes(tmp_path / "nope", what="hardware file", error=HardwareFileError)
    assert caught.value.code == "bad-hardware-file"


def test_json_nested_100k_deep_is_a_sentence_not_a_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BoundedReadError, match="nests too deeply"):
        boundedio.loads_json(deep, what="x.json")
    assert boundedio.loads_json("[[1]]", what="x.json") == [[1]]


def test_a_zip_bomb_is_refused_by_its_declared_size_without_unpacking(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.7.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("torch-2.7.1.dist-info/METADATA", b"\0" * (64 * 1024 * 1024))
    assert wheel.stat().st_size < 200_000  # a real bomb: 64 MiB in well under 1 % of that
    tracemalloc.start()
    try:
        with pytest.raises(BoundedReadError, match=r"unpacks to 64\.0 MiB"):
            wheel_requirements(wheel)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def _lying_zip(path: Path, real: bytes, claimed: int) -> None:
    """A zip whose headers claim `claimed` uncompressed bytes for a member that holds `real`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dist-info/METADATA", real)
    data = bytearray(path.read_bytes())
    real_size = len(real).to_bytes(4, "little")
    # Local header: uncompressed size at offset 22; central directory: at offset 24 of its entry.
    assert data[22:26] == real_size
    data[22:26] = claimed.to_bytes(4, "little")
    central = data.rindex(b"PK\x01\x02")
    assert data[central + 24 : central + 28] == real_size
    data[central + 24 : central + 28] = claimed.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_a_member_that_unpacks_to_more_than_it_declares_stops_at_the_cap(tmp_path: Path) -> None:
    archive = tmp_path / "liar.zip"
    _lying_zip(archive, b"\0" * (4 * 1024 * 1024), claimed=100)
    with zipfile.ZipFile(archive) as zf, pytest.raises((BoundedReadError, zipfile.BadZipFile)):
        boundedio.read_zip_member(zf, "a.dist-info/METADATA", limit=1000, what="METADATA")
    # And the wheel reader treats it as unreadable rather than crashing.
    assert wheel_requirements(archive) == ()


def test_an_honest_metadata_is_read(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.7.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("torch-2.7.1.dist-info/METADATA", "Name: torch\nVersion: 2.7.1\nRequires-Dist: sympy\n\n")
    assert wheel_requirements(wheel) == ("sympy",)


# --- the load sites --------------------------------------------------------------------------


@needs_fifo
def test_hardware_file_fifo_deep_and_huge(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert isinstance(_finishes(lambda: load_hardware_file(fifo)), HardwareFileError)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(HardwareFileError, match="nests too deeply"):
        load_hardware_file(deep)
    many = tmp_path / "many.json"
    gpus = [{"index": i, "name": "NVIDIA X", "compute_capability": "8.6"} for i in range(200_000)]
    many.write_text(json.dumps({"driver_version": "572.16", "cuda_driver_version": "12.8", "gpus": gpus}))
    with pytest.raises(HardwareFileError, match=r"larger than 1\.0 MiB"):
        load_hardware_file(many)


def test_knowledge_override_deep_and_huge(tmp_path: Path) -> None:
    override = tmp_path / "knowledge.json"
    override.write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    with pytest.raises(KnowledgeError, match="nests too deeply"):
        load_knowledge(override)
    override.write_text(json.dumps({"pad": "x" * (2 * 1024 * 1024)}))
    with pytest.raises(KnowledgeError, match="larger than"):
        load_knowledge(override)


@needs_fifo
@pytest.mark.parametrize("kind", ["fifo", "zero", "deep", "huge"])
def test_the_cli_says_one_line_and_exits_2(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path = Path("/dev/zero")
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_bytes(b" " * (2 * 1024 * 1024))
    done = subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "hardware", "--hardware", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchdoctor: hardware file "), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr

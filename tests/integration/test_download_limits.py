"""A hostile or broken file server ends each download with one clear error, and nothing is left behind.

A real local index misbehaves on purpose: it trickles a byte at a time (slow loris), sends a wheel
without end, claims a size that is not the index's, or fills a real (tmpfs) disk.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.boundedio import describe_size
from torchdoctor.service.install.download import (
    DiskFullError,
    DownloadRefusedError,
    Limits,
    download,
    remote_size,
    remove_stale_parts,
)
from torchdoctor.service.install.index import IndexClient, IndexFile

QUICK = Limits(stall_window=0.5, stall_min_bytes=4096, deadline=20.0)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[IndexServer, IndexFile]]:
    root = tmp_path / "index"
    big = random.Random(11).randbytes(300_000).hex()  # incompressible: the wheel is ~600 KB
    publish(root, [StandIn("torch", "2.7.1+cu128", cuda="12.8", files={"torch/big.txt": big})], "cu128")
    server = IndexServer(root).start()
    (file,) = IndexClient(server.url, cache_dir=tmp_path / "pages").list_files("cu128", "torch")
    yield server, file
    server.stop()


def _no_partials(folder: Path) -> None:
    assert not folder.exists() or not list(folder.glob("*.part"))


def test_a_slow_loris_server_is_given_up_on(tmp_path: Path, served: tuple[IndexServer, IndexFile]) -> None:
    server, file = served
    server.set(trickle=0.05)
    with pytest.raises(DownloadRefusedError, match="too slow") as caught:
        download(file, dest_dir=tmp_path / "dl", limits=QUICK, retries=2)
    assert caught.value.code == "download-failed"
    assert "bytes arrived in" in str(caught.value)
    assert sum(1 for r in server.requests if r.path.endswith(".whl")) == 1  # not retried
    _no_partials(tmp_path / "dl")


def test_an_endless_wheel_stops_at_the_cap(tmp_path: Path, served: tuple[IndexServer, IndexFile]) -> None:
    server, file = served
    server.set(endless=True)
    unknown = dataclasses.replace(file, size=None)  # HTML pages carry no size
    with pytest.raises(DownloadRefusedError, match=r"sent more than the 2\.0 MiB cap"):
        download(unknown, dest_dir=tmp_path / "dl", limits=dataclasses.replace(QUICK, max_bytes=2 * 2**20))
    _no_partials(tmp_path / "dl")


def test_a_body_longer_than_the_index_size_is_cut_off(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    server.set(endless=True)  # no Content-Length: only the index's size says when to stop
    sized = dataclasses.replace(file, size=1000)
    with pytest.raises(DownloadRefusedError, match="sent more than the 1000 bytes it declared"):
        download(sized, dest_dir=tmp_path / "dl", limits=QUICK)


def test_a_content_length_that_contradicts_the_index_is_refused(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    server.set(file_length=50_000_000_000)
    sized = dataclasses.replace(file, size=600_000)
    with pytest.raises(DownloadRefusedError, match="the server says it is 50000000000 bytes, the index said"):
        download(sized, dest_dir=tmp_path / "dl", limits=QUICK)
    server.set(file_length=None)
    asked = len(server.requests)
    huge = dataclasses.replace(file, size=50_000_000_000)
    with pytest.raises(DownloadRefusedError, match=r"it is 46.6 GiB, more than the 6.0 GiB a wheel may be"):
        download(huge, dest_dir=tmp_path / "dl")
    assert len(server.requests) == asked  # refused on the index's word, before any request


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs: a real ENOSPC. Needs root and mount(2)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30, check=False)


def test_a_full_disk_is_its_own_error_not_retried(
    tiny_disk: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    server.set(endless=True)  # no size known: the free-space check cannot catch it, the write does
    unknown = dataclasses.replace(file, size=None, sha256=None)
    with pytest.raises(DiskFullError) as caught:
        download(unknown, dest_dir=tiny_disk / "wheels", limits=QUICK, retries=2)
    assert caught.value.code == "disk-full"
    assert str(caught.value) == f"the disk holding {tiny_disk / 'wheels'} is full"
    assert sum(1 for r in server.requests if r.path.endswith(".whl")) == 1
    assert list((tiny_disk / "wheels").iterdir()) == []  # the partial file is gone, the space back


def test_a_known_size_that_does_not_fit_is_refused_before_downloading(
    tiny_disk: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    size = remote_size(file.url)
    assert size is not None and size > 256 * 1024
    with pytest.raises(DiskFullError, match=re.escape(f"is full ({describe_size(size)} needed)")):
        download(file, dest_dir=tiny_disk / "wheels")
    assert sum(1 for r in server.requests if r.method == "GET" and r.path.endswith(".whl")) == 1
    assert list((tiny_disk / "wheels").iterdir()) == []


def test_a_partial_left_by_a_killed_download_is_removed_by_the_next(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    server.set(trickle=0.01)
    dest = tmp_path / "dl"
    script = textwrap.dedent(
        f"""
        import pickle
        from pathlib import Path
        from torchdoctor.service.install.download import download
        download(pickle.loads(bytes.fromhex({pickle.dumps(file).hex()!r})), dest_dir=Path({str(dest)!r}))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            parts = list(dest.glob("*.part")) if dest.exists() else []
            if parts:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never started writing its .part file")
        assert parts[0].name == f"{file.filename}.{child.pid}.part"
        # While it runs, another download leaves its partial alone.
        assert remove_stale_parts(dest) == []
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert list(dest.glob("*.part")) == parts  # SIGKILL cleans nothing up
    server.set(trickle=None)
    path = download(file, dest_dir=dest)
    assert path.is_file() and list(dest.glob("*.part")) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_the_caches_are_private(served: tuple[IndexServer, IndexFile], td_dirs: dict[str, Path]) -> None:
    server, _ = served
    (file,) = IndexClient(server.url).list_files("cu128", "torch")  # the default page cache
    path = download(file)  # the default wheel cache
    cache = td_dirs["cache"]
    assert path.parent == cache / "wheels"
    for folder in (cache / "wheels", cache / "index"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for item in [path, *(cache / "index").iterdir()]:
        assert stat.S_IMODE(item.stat().st_mode) == 0o600, item

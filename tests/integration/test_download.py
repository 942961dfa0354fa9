"""Downloading planned wheels from a real local index: hashes enforced, partial files never kept."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.install.download import DownloadError, download
from torchdoctor.service.install.index import IndexClient, IndexFile, InsecureIndexError


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[IndexServer, IndexFile]]:
    root = tmp_path / "index"
    # Incompressible, so the wheel is large enough for a transfer to be cut mid-stream.
    big = random.Random(7).randbytes(300_000).hex()
    publish(root, [StandIn("torch", "2.7.1+cu128", cuda="12.8", files={"torch/big.txt": big})], "cu128")
    server = IndexServer(root).start()
    (file,) = IndexClient(server.url, cache_dir=tmp_path / "pages").list_files("cu128", "torch")
    yield server, file
    server.stop()


def test_a_wheel_is_downloaded_and_its_hash_checked(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    _, file = served
    seen: list[tuple[int, int | None]] = []
    path = download(
        file, dest_dir=tmp_path / "dl", progress=lambda _f, done, total: seen.append((done, total))
    )
    size = path.stat().st_size
    assert path.name == file.filename and size > 300_000
    assert seen[-1] == (size, size)  # the server's Content-Length stands in for the size HTML lacks
    assert not list((tmp_path / "dl").glob("*.part"))


def test_a_complete_earlier_download_is_reused(tmp_path: Path, served: tuple[IndexServer, IndexFile]) -> None:
    server, file = served
    download(file, dest_dir=tmp_path / "dl")
    before = server.counts.total()
    download(file, dest_dir=tmp_path / "dl")
    assert server.counts.total() == before


def test_a_hash_mismatch_is_refused_without_retrying(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    forged = dataclasses.replace(file, sha256="0" * 64)
    with pytest.raises(DownloadError, match="does not match the sha256"):
        download(forged, dest_dir=tmp_path / "dl", retries=2)
    assert not (tmp_path / "dl" / file.filename).exists()
    assert sum(1 for r in server.requests if r.path.endswith(".whl")) == 1


def test_a_connection_dropped_mid_file_leaves_nothing_behind(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    server, file = served
    server.set(truncate_files_after=100_000)
    with pytest.raises(DownloadError, match="could not download") as info:
        download(file, dest_dir=tmp_path / "dl", retries=1)
    assert info.value.hint is not None and "nothing in the environment was changed" in info.value.hint
    assert list((tmp_path / "dl").iterdir()) == []


def test_a_plain_http_file_on_another_host_is_refused(
    tmp_path: Path, served: tuple[IndexServer, IndexFile]
) -> None:
    _, file = served
    remote = dataclasses.replace(file, url="http://example.com/whl/" + file.filename)
    with pytest.raises(InsecureIndexError):
        download(remote, dest_dir=tmp_path / "dl")

"""`torchdoctor knowledge` through the real CLI against the real local index: what the facts
know, what the index publishes beyond them, and the exit codes (0 up to date, 1 the index knows
more or failed, 2 bad input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn

KEYS = ["schema_version", "retrieved", "override", "newest_release", "newest_cuda", "releases", "index"]
INDEX_KEYS = ["index_base", "asked", "up_to_date", "new_releases", "new_variants", "variant_cuda", "notes"]


def torchdoctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", "knowledge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def known_index(root: Path) -> None:
    """Releases and variants the shipped data knows."""
    publish(root, [StandIn("torch", "2.13.0+cu130", cuda="13.0")], "cu130")
    publish(root, [StandIn("torch", "2.15.0+cu132", cuda="13.2")], "cu132")
    publish(root, [StandIn("torch", "2.15.0+cpu"), StandIn("torch", "2.16.0.dev20261201+cpu")], "cpu")


def newer_index(root: Path) -> None:
    """A torch release and variants the data has never heard of, as a later index would have."""
    known_index(root)
    publish(root, [StandIn("torch", "2.16.0+cu132", cuda="13.2")], "cu132")
    publish(
        root,
        [StandIn("torch", "2.16.0+cu135", cuda="13.5", requires=["cuda-toolkit[cudart]==13.5.0"])],
        "cu135",
    )
    publish(root, [StandIn("torch", "2.13.0+cu129", cuda="12.9")], "cu129")


def test_without_the_index_it_shows_what_the_facts_know() -> None:
    result = torchdoctor("--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert list(out) == KEYS
    assert out["index"] is None and out["override"] is None
    assert out["newest_release"] == "2.15" and out["newest_cuda"] == "13.4"
    assert {
        "release": "2.14",
        "variants": ["cpu", "cu126", "cu130", "cu132", "cu134", "rocm7.2", "rocm7.14", "xpu"],
    } in out["releases"]
    text = torchdoctor()
    assert text.returncode == 0 and "torch 2.0 to 2.15" in text.stdout


def test_an_index_with_nothing_new_is_up_to_date(tmp_path: Path) -> None:
    known_index(tmp_path)
    with IndexServer(tmp_path) as server:
        result = torchdoctor("--json", "--check-index", "--index-base", server.url)
    assert result.returncode == 0, result.stderr
    index = json.loads(result.stdout)["index"]
    assert list(index) == INDEX_KEYS
    assert index["up_to_date"] is True and index["asked"] == "the all-variants page"
    assert index["new_releases"] == [] and index["new_variants"] == []  # the nightly does not count


def test_a_newer_index_says_what_the_facts_miss_and_exits_1(tmp_path: Path) -> None:
    newer_index(tmp_path)
    with IndexServer(tmp_path) as server:
        result = torchdoctor("--json", "--check-index", "--index-base", server.url)
        text = torchdoctor("--check-index", "--index-base", server.url)
    assert result.returncode == 1, result.stderr
    index = json.loads(result.stdout)["index"]
    assert index["up_to_date"] is False
    assert index["new_releases"] == [{"version": "2.16.0", "variants": ["cu132", "cu135"]}]
    assert index["new_variants"] == [{"variant": "cu129", "versions": ["2.13.0"]}]
    # The new variant's CUDA toolkit, read from its wheel's METADATA.
    assert index["variant_cuda"] == {"cu135": "13.5.0"}
    assert text.returncode == 1
    assert "torch 2.16.0 (cu132, cu135)" in text.stdout and "cu135 is built with CUDA 13.5.0" in text.stdout


def test_a_mirror_without_the_all_variants_page_is_asked_per_known_variant(tmp_path: Path) -> None:
    newer_index(tmp_path)
    with IndexServer(tmp_path) as server:
        server.set(all_variants=False)
        result = torchdoctor("--json", "--check-index", "--index-base", server.url)
    assert result.returncode == 1, result.stderr
    index = json.loads(result.stdout)["index"]
    assert index["asked"] == "each known variant's page"
    # cu135 is no variant the facts know, so it cannot be asked for; cu132's 2.16.0 still shows.
    assert index["new_releases"] == [{"version": "2.16.0", "variants": ["cu132"]}]
    assert any("not served" in n for n in index["notes"])


@pytest.mark.parametrize("base", ["http://example.com/whl", "ftp://example.com/whl"])
def test_a_bad_index_base_is_one_line_and_exit_2(base: str) -> None:
    result = torchdoctor("--check-index", "--index-base", base)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("torchdoctor: ")
    assert "Traceback" not in result.stderr


def test_an_unreachable_index_is_exit_1_with_its_error_line(tmp_path: Path) -> None:
    server = IndexServer(tmp_path)
    url = server.url
    server.stop()  # nothing listens there now
    result = torchdoctor("--check-index", "--index-base", url)
    assert result.returncode == 1
    assert "Could not reach the package index" in result.stderr and "Traceback" not in result.stderr

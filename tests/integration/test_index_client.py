"""The index client against a real HTTP index on 127.0.0.1, and real pip / uv against that index."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from tests.support.index_server import IndexServer, IndexServerFactory, publish, torch_family
from tests.support.standin import StandIn
from torchdoctor.service import proc
from torchdoctor.service.envs.tags import interpreter_facts, tags_for
from torchdoctor.service.errors import BadInputError
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE
from torchdoctor.service.install.index import (
    ACCEPT,
    IndexClient,
    IndexFile,
    IndexResponseError,
    IndexUnreachableError,
    InsecureIndexError,
    compatible,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "index"
LINUX_TAGS = [
    "cp310-cp310-manylinux_2_28_x86_64",
    "cp311-cp311-manylinux_2_28_x86_64",
    "cp312-cp312-manylinux_2_28_x86_64",
    "cp311-cp311-manylinux_2_28_aarch64",
    "cp311-cp311-win_amd64",
]


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cu128 and cu126 releases for several platforms; cpu without torchaudio, with a 2.9/2.10 trap."""
    root = tmp_path_factory.mktemp("index")
    publish(root, torch_family("cu128", tags=LINUX_TAGS), "cu128")
    publish(
        root,
        torch_family("cu126", torch="2.6.0", torchvision="0.21.0", torchaudio="2.6.0", tags=LINUX_TAGS[:2]),
        "cu126",
    )
    publish(root, torch_family("cpu", torch="2.9.1", torchvision="0.24.1", torchaudio=None), "cpu")
    publish(root, torch_family("cpu", torch="2.10.0", torchvision="0.25.0", torchaudio=None), "cpu")
    return root


@pytest.fixture
def servers() -> Iterator[IndexServerFactory]:
    factory = IndexServerFactory()
    yield factory
    factory.close()


@pytest.fixture
def server(servers: IndexServerFactory, index_root: Path) -> IndexServer:
    return servers(index_root)


class Sleeps:
    """Records backoff sleeps instead of sleeping: time is the boundary here."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client_for(
    url: str, tmp_path: Path, *, timeout: float = 5.0, retries: int = 2, cache_ttl: float = 3600.0
) -> IndexClient:
    return IndexClient(
        url,
        cache_dir=tmp_path / "cache",
        timeout=timeout,
        retries=retries,
        cache_ttl=cache_ttl,
        sleep=Sleeps(),
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- listing ----------------------------------------------------------------------------------


def test_html_listing_has_every_wheel_with_its_real_hash(
    server: IndexServer, index_root: Path, tmp_path: Path
) -> None:
    files = client_for(server.url, tmp_path).list_files("cu128", "torch")
    on_disk = {p.name: p for p in (index_root / "cu128" / "torch").glob("*.whl")}
    assert {f.filename for f in files} == set(on_disk)
    assert len(files) == len(LINUX_TAGS)
    for item in files:
        assert item.sha256 == sha256_of(on_disk[item.filename])
        assert item.version == Version("2.7.1+cu128")
        assert item.local == "cu128"
        assert item.requires_python == ">=3.9"
        assert item.url.startswith(f"{server.url}/cu128/torch/torch-2.7.1%2Bcu128-")
        assert item.size is None  # HTML pages do not say
    (record,) = [r for r in server.requests if r.path == "/cu128/torch/"]
    assert record.accept == ACCEPT
    assert record.served == "html"


def test_json_is_used_when_the_server_offers_it_and_says_the_same(
    servers: IndexServerFactory, index_root: Path, tmp_path: Path
) -> None:
    html_server = servers(index_root)
    json_server = servers(index_root, offer_json=True)
    from_html = client_for(html_server.url, tmp_path / "a").list_files("cu128", "torchvision")
    from_json = client_for(json_server.url, tmp_path / "b").list_files("cu128", "torchvision")
    assert [r.served for r in json_server.requests] == ["json"]

    def key(files: tuple[IndexFile, ...]) -> set[tuple[object, ...]]:
        # the same file on both servers, apart from the port in its URL
        return {
            (f.filename, f.url.split("/", 3)[3], f.sha256, f.version, f.tags, f.requires_python)
            for f in files
        }

    assert key(from_html) == key(from_json)
    folder = index_root / "cu128" / "torchvision"
    assert {f.size for f in from_json} == {(folder / f.filename).stat().st_size for f in from_json}


def test_project_names_are_normalised_in_the_url(server: IndexServer, tmp_path: Path) -> None:
    files = client_for(server.url, tmp_path).list_files("cu128", "TorchVision")
    assert files
    assert {f.project for f in files} == {"torchvision"}
    assert server.count("/cu128/torchvision/") == 1


def test_absolute_links_to_another_host_are_followed(
    servers: IndexServerFactory, index_root: Path, tmp_path: Path
) -> None:
    files_host = servers(index_root)
    pages = servers(index_root, files_base=files_host.url)
    files = client_for(pages.url, tmp_path).list_files("cu128", "torch")
    assert files
    assert all(f.url.startswith(files_host.url + "/") for f in files)
    first = files[0]
    with urllib.request.urlopen(first.url, timeout=5) as response:  # noqa: S310 - our loopback server
        body = response.read()
    assert hashlib.sha256(body).hexdigest() == first.sha256
    assert files_host.count(f"/cu128/torch/{first.filename}") == 1
    assert pages.count(f"/cu128/torch/{first.filename}") == 0


def test_pages_without_hashes_give_none_not_a_guess(server: IndexServer, tmp_path: Path) -> None:
    server.set(hashes=False)
    files = client_for(server.url, tmp_path).list_files("cu128", "torch")
    assert files
    assert all(f.sha256 is None for f in files)
    assert all(f.has_metadata for f in files)


def test_pep658_metadata_is_served_and_its_hash_matches(server: IndexServer, tmp_path: Path) -> None:
    item = client_for(server.url, tmp_path).list_files("cu128", "torchvision")[0]
    assert item.metadata_url is not None
    with urllib.request.urlopen(item.metadata_url, timeout=5) as response:  # noqa: S310 - loopback
        metadata = response.read()
    assert hashlib.sha256(metadata).hexdigest() == item.metadata_sha256
    assert b"Name: torchvision" in metadata
    assert b"Requires-Dist: torch==2.7.1" in metadata


def test_yanked_files_are_marked_and_never_compatible(server: IndexServer, tmp_path: Path) -> None:
    name = "torch-2.7.1+cu128-cp311-cp311-manylinux_2_28_x86_64.whl"
    server.set(yanked={name: "broken upload"})
    files = client_for(server.url, tmp_path).list_files("cu128", "torch")
    assert [f.filename for f in files if f.yanked] == [name]
    facts = interpreter_facts(Path(sys.executable))
    assert name not in {f.filename for f in compatible(files, tags_for(facts), facts.python_version)}


def test_versions_are_compared_as_versions(server: IndexServer, tmp_path: Path) -> None:
    files = client_for(server.url, tmp_path).list_files("cpu", "torch")
    assert {str(f.version) for f in files} == {"2.9.1+cpu", "2.10.0+cpu"}
    assert max(files, key=lambda f: f.version).version == Version("2.10.0+cpu")


def test_compatible_picks_the_one_wheel_for_the_real_interpreter(server: IndexServer, tmp_path: Path) -> None:
    facts = interpreter_facts(Path(sys.executable))
    if (facts.system, facts.machine) != ("Linux", "x86_64"):
        pytest.skip("the published tags are for Linux x86_64")
    client = client_for(server.url, tmp_path)
    picked = compatible(client.list_files("cu128", "torch"), tags_for(facts), facts.python_version)
    nodot = facts.version_nodot
    assert [f.filename for f in picked] == [
        f"torch-2.7.1+cu128-cp{nodot}-cp{nodot}-manylinux_2_28_x86_64.whl"
    ]


def test_a_missing_project_is_empty_and_not_retried(server: IndexServer, tmp_path: Path) -> None:
    client = client_for(server.url, tmp_path, retries=3)
    page = client.fetch_page("cpu", "torchaudio")
    assert page.files == ()
    assert not page.found
    assert server.count("/cpu/torchaudio/") == 1
    assert client.list_files("cu999", "torch") == ()


def test_a_bad_variant_name_is_bad_input(tmp_path: Path) -> None:
    client = client_for("http://127.0.0.1:9", tmp_path)
    with pytest.raises(BadInputError, match="variant"):
        client.list_files("../etc", "torch")


def test_the_default_base_is_the_pytorch_index_and_pages_live_in_the_cache_folder(
    server: IndexServer, td_dirs: dict[str, Path]
) -> None:
    assert IndexClient().page_url("cu128", "Torch") == f"{DEFAULT_INDEX_BASE}/cu128/torch/"
    IndexClient(server.url).list_files("cu128", "torch")
    cached = list((td_dirs["cache"] / "index").glob("*.json"))
    assert len(cached) == 1


def test_a_recorded_pytorch_page_served_over_http_resolves_its_links(
    server: IndexServer, tmp_path: Path
) -> None:
    body = (FIXTURES / "cu128-torch.html").read_bytes()
    server.set(pages={"/cu128/torch/": ("text/html", body)})
    files = client_for(server.url, tmp_path).list_files("cu128", "torch")
    assert len(files) == 19
    relative = [f for f in files if f.version == Version("2.7.0+cu128")]
    assert all(f.url.startswith(f"{server.url}/whl/cu128/torch-2.7.0%2Bcu128-") for f in relative)
    (r2,) = [f for f in files if f.version == Version("2.11.0+cu128")]
    assert r2.url.startswith("https://download-r2.pytorch.org/")


def test_an_unreadable_page_is_an_error_and_is_not_cached(server: IndexServer, tmp_path: Path) -> None:
    server.set(pages={"/cu128/torch/": ("application/vnd.pypi.simple.v1+json", b"{truncated")})
    client = client_for(server.url, tmp_path)
    with pytest.raises(IndexResponseError, match="PEP 691"):
        client.list_files("cu128", "torch")
    server.set(pages={})
    assert client.list_files("cu128", "torch")  # asked again: the broken page was not kept
    assert server.count("/cu128/torch/") == 2


# --- failures, retries, cache ----------------------------------------------------------------


def test_server_errors_are_retried_with_backoff_then_succeed(server: IndexServer, tmp_path: Path) -> None:
    server.fail(2, status=503)
    client = IndexClient(server.url, cache_dir=tmp_path, retries=2, backoff=0.5, sleep=(sleeps := Sleeps()))
    assert client.list_files("cu128", "torch")
    assert server.count("/cu128/torch/") == 3
    assert sleeps.calls == [0.5, 1.0]


def test_an_index_that_keeps_failing_is_unreachable_with_a_readable_message(
    server: IndexServer, tmp_path: Path
) -> None:
    server.fail(100)
    client = client_for(server.url, tmp_path, retries=2)
    with pytest.raises(IndexUnreachableError) as info:
        client.list_files("cu128", "torch")
    message = str(info.value)
    # It answered: what it said and where, not "offline".
    assert message == (
        f"The package index answered 500 Internal Server Error at {server.url}/cu128/torch/ (asked 3 times)."
    )
    assert info.value.hint is not None
    assert server.url in info.value.hint
    assert "download.pytorch.org" not in info.value.hint
    assert server.count("/cu128/torch/") == 3


def test_a_refusal_is_not_retried(server: IndexServer, tmp_path: Path) -> None:
    server.fail(5, status=403)
    with pytest.raises(IndexResponseError) as info:
        client_for(server.url, tmp_path, retries=3).list_files("cu128", "torch")
    assert str(info.value) == f"The package index answered 403 Forbidden at {server.url}/cu128/torch/."
    assert info.value.hint is not None and f"--index-base {server.url}" in info.value.hint
    assert server.count("/cu128/torch/") == 1


def test_a_fresh_cached_page_is_used_without_asking_again(server: IndexServer, tmp_path: Path) -> None:
    first = client_for(server.url, tmp_path).fetch_page("cu128", "torch")
    again = client_for(server.url, tmp_path).fetch_page("cu128", "torch")  # new client, same disk
    assert server.count("/cu128/torch/") == 1
    assert not first.from_cache
    assert again.from_cache
    assert not again.stale
    assert again.files == first.files


def test_an_expired_page_is_fetched_again(server: IndexServer, tmp_path: Path) -> None:
    client = client_for(server.url, tmp_path, cache_ttl=0)
    client.list_files("cu128", "torch")
    client.list_files("cu128", "torch")
    assert server.count("/cu128/torch/") == 2


def test_offline_with_an_expired_copy_uses_it_and_says_so(
    servers: IndexServerFactory, index_root: Path, tmp_path: Path
) -> None:
    online = servers(index_root)
    url = online.url
    fresh = client_for(url, tmp_path).list_files("cu128", "torch")
    online.stop()  # the port is closed now: connections are refused, as when offline
    client = client_for(url, tmp_path, cache_ttl=0, retries=1)
    page = client.fetch_page("cu128", "torch")
    assert page.stale
    assert page.from_cache
    assert page.files == fresh
    (note,) = client.notes
    assert f"{url}/cu128/torch/" in note
    assert "cached" in note
    assert "refused" in note


def test_offline_without_a_cache_is_an_error_naming_the_url(
    servers: IndexServerFactory, index_root: Path, tmp_path: Path
) -> None:
    gone = servers(index_root)
    url = gone.url
    gone.stop()
    with pytest.raises(IndexUnreachableError, match="connection was refused") as info:
        client_for(url, tmp_path, retries=1).list_files("cu128", "torch")
    assert f"{url}/cu128/torch/" in str(info.value)


def test_a_hanging_index_times_out(server: IndexServer, tmp_path: Path) -> None:
    server.set(delay=2.0)
    started = time.monotonic()
    with pytest.raises(IndexUnreachableError, match="timed out"):
        client_for(server.url, tmp_path, timeout=0.3, retries=1).list_files("cu128", "torch")
    assert time.monotonic() - started < 1.9
    assert server.count("/cu128/torch/") == 2


# --- security -------------------------------------------------------------------------------


def test_a_redirect_to_plain_http_elsewhere_is_refused(server: IndexServer, tmp_path: Path) -> None:
    server.set(redirects={"/cu128/torch/": "http://index.example.invalid/cu128/torch/"})
    with pytest.raises(InsecureIndexError, match="plain http"):
        client_for(server.url, tmp_path).list_files("cu128", "torch")


def test_a_page_linking_files_over_plain_http_elsewhere_is_refused(
    servers: IndexServerFactory, index_root: Path, tmp_path: Path
) -> None:
    evil = servers(index_root, files_base="http://files.example.invalid")
    with pytest.raises(InsecureIndexError, match=r"http://files\.example\.invalid/cu128/torch/"):
        client_for(evil.url, tmp_path).list_files("cu128", "torch")


def test_a_plain_http_index_base_elsewhere_is_refused_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(InsecureIndexError):
        IndexClient("http://download.pytorch.org/whl", cache_dir=tmp_path)


# --- the server's knobs for later install tests ----------------------------------------------


def test_server_can_cut_a_download_short(server: IndexServer, index_root: Path) -> None:
    wheel = next((index_root / "cu128" / "torch").glob("*.whl"))
    url = f"{server.url}/cu128/torch/{wheel.name.replace('+', '%2B')}"
    server.set(truncate_files_after=100)
    with (
        pytest.raises(http.client.IncompleteRead) as info,
        urllib.request.urlopen(url, timeout=5) as response,  # noqa: S310 - loopback
    ):
        response.read()
    assert len(info.value.partial) == 100
    server.set(truncate_files_after=None, drop_files=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        urllib.request.urlopen(url, timeout=5)  # noqa: S310 - loopback
    assert [r.served for r in server.requests][-2:] == ["truncated", "dropped"]


def test_published_wheels_can_be_added_while_the_server_runs(tmp_path: Path) -> None:
    root = tmp_path / "index"
    with IndexServer(root) as live:
        assert client_for(live.url, tmp_path / "a").list_files("cu130", "torch") == ()
        publish(root, [StandIn("torch", "2.9.0+cu130", cuda="13.0")], "cu130")
        (item,) = client_for(live.url, tmp_path / "b").list_files("cu130", "torch")
        assert item.version == Version("2.9.0+cu130")


# --- real installers against the server -------------------------------------------------------


def installer_env() -> dict[str, str]:
    """The environment for pip and uv, without this machine's package settings.

    This machine's pip reads a global constraint file (/etc/xdg/pip: torch<=2.14.1) and
    PIP_FIND_LINKS=/opt/wheels, which holds a real torch wheel; either would make the answer depend
    on the machine instead of on our index. PIP_CONFIG_FILE=os.devnull makes pip skip every config
    file, and dropping PIP_* / UV_* drops the rest. NO_PROXY keeps a proxy off our loopback server.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
    )
    return env


def installed(python: Path) -> str:
    done = proc.run(
        [
            python,
            "-c",
            "import torch, importlib.metadata as m; "
            "print(torch.__version__, torch.version.cuda, m.version('torch'))",
        ],
        timeout=60,
    )
    assert done.ok, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_uv_installs_from_the_test_index(server: IndexServer, tmp_path: Path) -> None:
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        found = shutil.which("uv")
        if found is None:
            pytest.skip("uv is not installed")
        uv = Path(found)
    venv = tmp_path / "venv"
    made = proc.run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    assert made.ok, made.stderr
    python = venv / "bin" / "python"
    done = proc.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            python,
            "--no-cache",
            "--index-url",
            server.index_url("cu128"),
            "torch==2.7.1+cu128",
        ],
        timeout=300,
        env=installer_env(),
        cwd=tmp_path,
    )
    assert done.ok, done.stderr
    assert installed(python) == "2.7.1+cu128 12.8 2.7.1+cu128"
    assert server.count("/cu128/torch/") >= 1


@pytest.mark.slow
def test_pip_installs_from_the_test_index_with_dependencies(server: IndexServer, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = proc.run([sys.executable, "-m", "venv", venv], timeout=300)
    assert made.ok, made.stderr
    python = venv / "bin" / "python"
    done = proc.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--index-url",
            server.index_url("cu128"),
            "torchvision==0.22.1+cu128",  # pulls torch==2.7.1 through its Requires-Dist
        ],
        timeout=300,
        env=installer_env(),
        cwd=tmp_path,
    )
    assert done.ok, done.stdout + done.stderr
    assert installed(python) == "2.7.1+cu128 12.8 2.7.1+cu128"
    vision = proc.run([python, "-c", "import torchvision; print(torchvision.__version__)"], timeout=60)
    assert vision.stdout.strip() == "0.22.1+cu128"
    assert server.count("/cu128/torchvision/") >= 1
    assert server.count("/cu128/torch/") >= 1

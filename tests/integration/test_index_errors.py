"""What `plan` and `fix` say when the index fails: the real CLI, a real venv, a real index on 127.0.0.1.

Each failure is one line on stderr naming the URL and what the index answered (or the TLS problem
and its host), with a hint about the index actually in use, never download.pytorch.org when the
user gave a mirror; and pages that failed are asked for again on the next run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.index_server import HOST, IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.install.download import DownloadError, download
from torchdoctor.service.install.index import IndexClient, IndexFile, IndexResponseError, IndexTLSError
from torchdoctor.service.models import PythonEnv

pytestmark = pytest.mark.slow

RTX_4090 = {
    "driver_version": "572.16",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}],
}
PAGE = r"http://127\.0\.0\.1:\d+/cu\d+/torch/"


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors-index")
    for variant in ("cu126", "cu128"):
        publish(root, [StandIn("torch", f"2.7.1+{variant}", cuda=f"{variant[2:4]}.{variant[4]}")], variant)
    return root


@pytest.fixture
def index(index_root: Path) -> Iterator[IndexServer]:
    with IndexServer(index_root) as server:
        yield server


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> PythonEnv:
    env = make_venv(tmp_path_factory.mktemp("errors-env") / "venv")
    install_standins(env, [StandIn("torch", "2.7.1+cpu")])
    return env


def cli(tmp_path: Path, command: str, env: Path, base: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`torchdoctor COMMAND --env ENV --hardware FILE --index-base BASE`, as a person would run it."""
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(json.dumps(RTX_4090))
    argv = [sys.executable, "-m", "torchdoctor.agent", command, "--env", str(env), "--hardware", str(hw_file)]
    argv += ["--index-base", base, *extra]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ, NO_COLOR="1")
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr, which must be exactly one `torchdoctor: ...` line and no traceback."""
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("torchdoctor: ")
    return lines[0]


def torch_pages(server: IndexServer) -> dict[str, int]:
    with server.lock:
        return {path: n for path, n in server.counts.items() if path.endswith("/torch/")}


# --- the index answers with an error status ---------------------------------------------------


def test_a_failing_index_names_the_status_and_the_page_not_offline(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    index.fail(10_000, status=500)
    proc = cli(tmp_path, "plan", venv.root, index.url)
    assert proc.returncode == 1
    line = one_line(proc)
    assert re.search(f"answered 500 Internal Server Error at {PAGE} \\(asked 3 times\\)", line), line
    assert "offline" not in line and "could not reach" not in line.lower()
    hint = line.partition("(hint: ")[2]
    assert index.url in hint
    assert "download.pytorch.org" not in line


def test_a_failing_index_gives_json_consumers_the_status_too(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    index.fail(10_000, status=503)
    proc = cli(tmp_path, "plan", venv.root, index.url, "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["error"] == "index-unreachable"
    assert re.search(f"answered 503 Service Unavailable at {PAGE}", doc["reason"]), doc["reason"]
    assert index.url in doc["hint"] and "download.pytorch.org" not in doc["hint"]


def test_a_refusing_index_is_asked_once_per_page_and_named_in_the_hint(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    index.fail(10_000, status=403)
    proc = cli(tmp_path, "fix", venv.root, index.url, "--dry-run")
    assert proc.returncode == 1
    line = one_line(proc)
    assert re.search(f"The package index answered 403 Forbidden at {PAGE}\\.", line), line
    assert f"--index-base {index.url}" in line.partition("(hint: ")[2]
    assert "download.pytorch.org" not in line
    assert set(torch_pages(index).values()) == {1}  # a refusal is not retried


def test_failed_pages_are_not_cached_and_are_asked_again_on_the_next_run(
    tmp_path: Path, index: IndexServer, venv: PythonEnv, td_dirs: dict[str, Path]
) -> None:
    for status in (404, 500, 403):
        index.fail(10_000, status=status)
        asked: list[dict[str, int]] = []
        for _run in range(2):
            before = torch_pages(index)
            proc = cli(tmp_path, "plan", venv.root, index.url)
            assert proc.returncode == 1, proc.stderr
            after = torch_pages(index)
            asked.append({p: n - before.get(p, 0) for p, n in after.items() if n > before.get(p, 0)})
        # the second run asked again: nothing was kept from the first
        assert asked[0] and asked[1], status
        if status == 404:
            # nothing stops a plan early on a 404, so both runs asked for the same pages
            assert asked[1] == asked[0] == dict.fromkeys(asked[0], 1)
    assert list((td_dirs["cache"] / "index").glob("*.json")) == []
    index.fail(0)
    good = cli(tmp_path, "plan", venv.root, index.url, "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["variant"] == "cu128"


def test_an_index_base_that_has_none_of_the_pages_says_404_and_the_url(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    index.fail(10_000, status=404)
    mirror = f"{index.url}/whl"
    proc = cli(tmp_path, "plan", venv.root, mirror)
    assert proc.returncode == 1
    line = one_line(proc)
    assert re.search(r"answered 404 at http://127\.0\.0\.1:\d+/whl/cu\d+/torch/", line), line
    assert f"--index-base {mirror}" in line.partition("(hint: ")[2]
    assert "download.pytorch.org" not in line


# --- TLS -----------------------------------------------------------------------------------------


def test_https_to_a_plain_http_server_is_a_tls_problem_naming_the_host(
    tmp_path: Path, index: IndexServer, venv: PythonEnv
) -> None:
    host = f"{HOST}:{index.port}"
    proc = cli(tmp_path, "plan", venv.root, f"https://{host}")
    assert proc.returncode == 1
    line = one_line(proc)
    assert f"TLS/certificate problem with {host} at https://{host}/cu" in line, line
    assert "handshake" in line
    assert "offline" not in line and "could not reach" not in line.lower()
    assert f"check that {host} serves https" in line.partition("(hint: ")[2]
    assert "download.pytorch.org" not in line


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[str]:
    """An https server on 127.0.0.1 whose certificate nobody trusts (made here by openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    argv = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    argv += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://{HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


def test_an_untrusted_certificate_is_a_tls_problem_not_offline(
    tmp_path: Path, self_signed_server: str, venv: PythonEnv
) -> None:
    host = self_signed_server.removeprefix("https://")
    environ = {k: v for k, v in os.environ.items() if k not in {"SSL_CERT_FILE", "SSL_CERT_DIR"}}
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(json.dumps(RTX_4090))
    argv = [sys.executable, "-m", "torchdoctor.agent", "plan", "--env", str(venv.root)]
    argv += ["--hardware", str(hw_file), "--index-base", self_signed_server]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=environ)
    assert proc.returncode == 1
    line = one_line(proc)
    assert f"TLS/certificate problem with {host}" in line, line
    assert "certificate could not be verified" in line and "self-signed" in line
    assert "offline" not in line and "could not reach" not in line.lower()
    assert host in line.partition("(hint: ")[2]


# --- the client and the downloader, without the CLI ----------------------------------------------


def client_for(url: str, tmp_path: Path) -> IndexClient:
    return IndexClient(url, cache_dir=tmp_path / "pages", retries=2, sleep=lambda _s: None)


def test_a_404_is_not_cached_and_the_next_client_asks_again(index: IndexServer, tmp_path: Path) -> None:
    index.fail(1, status=404)
    page = client_for(index.url, tmp_path).fetch_page("cu128", "torch")
    assert not page.found and page.files == ()
    again = client_for(index.url, tmp_path).fetch_page("cu128", "torch")  # the mirror has it now
    assert again.found and again.files and not again.from_cache
    assert index.count("/cu128/torch/") == 2


def test_every_page_missing_is_one_error_naming_the_first_url_and_the_base(
    index: IndexServer, tmp_path: Path
) -> None:
    index.fail(100, status=404)
    mirror = f"{index.url}/whl"
    client = client_for(mirror, tmp_path)
    assert client.list_files("cu128", "torch") == ()
    assert client.list_files("cu126", "torch") == ()
    assert client.missing == ((f"{mirror}/cu128/torch/", 404), (f"{mirror}/cu126/torch/", 404))
    with pytest.raises(IndexResponseError) as info:
        client.raise_if_all_missing()
    assert str(info.value) == (
        f"The package index answered 404 at {mirror}/cu128/torch/ (and 1 other page asked for): "
        f"{mirror} has none of the pages torchdoctor asked for."
    )
    assert info.value.hint is not None
    assert f"--index-base {mirror}" in info.value.hint and "download.pytorch.org" not in info.value.hint


def test_some_pages_missing_is_a_partial_mirror_not_an_error(index: IndexServer, tmp_path: Path) -> None:
    client = client_for(index.url, tmp_path)
    assert client.list_files("cu129", "torch") == ()  # this index has no cu129
    assert client.list_files("cu128", "torch")
    client.raise_if_all_missing()
    assert client.missing == ((f"{index.url}/cu129/torch/", 404),)


def test_tls_to_a_plain_http_server_is_not_retried_and_names_the_host(
    index: IndexServer, tmp_path: Path
) -> None:
    host = f"{HOST}:{index.port}"
    slept: list[float] = []
    client = IndexClient(f"https://{host}", cache_dir=tmp_path / "pages", retries=2, sleep=slept.append)
    with pytest.raises(IndexTLSError) as info:
        client.list_files("cu128", "torch")
    assert slept == []  # asking again would not change the certificate
    assert str(info.value).startswith(f"TLS/certificate problem with {host} at https://{host}/cu128/torch/: ")
    assert info.value.code == "index-tls-failed"


def test_a_stale_copy_is_still_used_when_tls_fails_later(index: IndexServer, tmp_path: Path) -> None:
    """A copy fetched over a good connection beats no plan; the note says why it is stale."""
    plain = client_for(index.url, tmp_path)
    fresh = plain.list_files("cu128", "torch")
    pages = tmp_path / "pages"
    https = index.url.replace("http://", "https://")
    for cached in pages.glob("*.json"):
        # the same page as if it had been fetched from the https address a week ago
        record = json.loads(cached.read_text())
        record["url"] = record["url"].replace(index.url, https)
        record["final_url"] = record["final_url"].replace(index.url, https)
        record["fetched_at"] -= 7 * 86400
        (pages / (hashlib.sha256(record["url"].encode()).hexdigest()[:40] + ".json")).write_text(
            json.dumps(record)
        )
    client = IndexClient(https, cache_dir=pages, retries=0, cache_ttl=60)
    page = client.fetch_page("cu128", "torch")
    assert page.stale and page.from_cache
    assert [f.filename for f in page.files] == [f.filename for f in fresh]
    (note,) = client.notes
    assert note.startswith(f"TLS/certificate problem with {HOST}:{index.port}")
    assert "cached 7 days ago" in note


@pytest.fixture
def wheel(index: IndexServer, tmp_path: Path) -> IndexFile:
    (file,) = client_for(index.url, tmp_path).list_files("cu128", "torch")
    return file


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # download.py sleeps between attempts
    return slept


def wheel_requests(server: IndexServer) -> int:
    with server.lock:
        return sum(1 for r in server.requests if r.path.endswith(".whl"))


def test_a_wheel_that_is_not_there_names_the_status_and_url_and_is_not_retried(
    index: IndexServer, wheel: IndexFile, tmp_path: Path, no_sleep: list[float]
) -> None:
    index.fail(10, status=404)
    with pytest.raises(DownloadError) as info:
        download(wheel, dest_dir=tmp_path / "dl", retries=2)
    assert str(info.value) == (
        f"could not download {wheel.filename}: the server answered 404 Not Found at {wheel.url}"
    )
    assert info.value.hint is not None and "nothing in the environment was changed" in info.value.hint
    assert wheel_requests(index) == 1
    assert no_sleep == []


def test_a_failing_file_server_is_retried_then_named_with_its_status(
    index: IndexServer, wheel: IndexFile, tmp_path: Path, no_sleep: list[float]
) -> None:
    index.fail(10, status=502)
    with pytest.raises(DownloadError) as info:
        download(wheel, dest_dir=tmp_path / "dl", retries=2)
    assert str(info.value) == (
        f"could not download {wheel.filename}: the server answered 502 Bad Gateway at {wheel.url} "
        "(asked 3 times)"
    )
    assert wheel_requests(index) == 3
    assert len(no_sleep) == 2
    assert list((tmp_path / "dl").iterdir()) == []


def test_a_wheel_over_broken_tls_is_a_tls_problem_naming_the_host(
    index: IndexServer, wheel: IndexFile, tmp_path: Path, no_sleep: list[float]
) -> None:
    host = f"{HOST}:{index.port}"
    https = dataclasses.replace(wheel, url=wheel.url.replace("http://", "https://"))
    with pytest.raises(DownloadError) as info:
        download(https, dest_dir=tmp_path / "dl", retries=2)
    assert str(info.value).startswith(
        f"could not download {wheel.filename}: TLS/certificate problem with {host} at {https.url} ("
    )
    assert info.value.hint is not None and host in info.value.hint
    assert no_sleep == []  # not retried

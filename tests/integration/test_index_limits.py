"""The index client against a real local index that misbehaves or wants credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.index_server import IndexServer, publish
from tests.support.standin import StandIn
from torchdoctor.service.install import urlsecrets
from torchdoctor.service.install.download import download
from torchdoctor.service.install.index import (
    PAGE_DEADLINE_S,
    IndexClient,
    IndexResponseError,
    parse_simple_html,
)

TOKEN = "ghp_Abc123Def456Ghi789"  # noqa: S105 - a made-up token in the index path
SECRET = "s3cret-Tok3n"  # noqa: S105 - a made-up credential the test index demands


@pytest.fixture(autouse=True)
def _no_credentials() -> Iterator[None]:
    urlsecrets.forget_all()
    yield
    urlsecrets.forget_all()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[IndexServer]:
    root = tmp_path / "index"
    publish(root, [StandIn("torch", "2.7.1+cu128", cuda="12.8")], "cu128")
    with IndexServer(root) as running:
        yield running


def _client(base: str, tmp_path: Path, *, page_deadline: float = PAGE_DEADLINE_S) -> IndexClient:
    return IndexClient(base, cache_dir=tmp_path / "pages", backoff=0.0, page_deadline=page_deadline)


def test_a_slow_loris_page_is_a_bad_response_not_offline_and_not_retried(
    server: IndexServer, tmp_path: Path
) -> None:
    server.set(trickle=0.05)
    with pytest.raises(IndexResponseError, match=r"sent .* too slowly") as caught:
        _client(server.url, tmp_path, page_deadline=0.5).list_files("cu128", "torch")
    assert caught.value.code == "index-bad-response"
    assert server.count("/cu128/torch/") == 1


def test_an_endless_page_stops_at_the_page_cap(server: IndexServer, tmp_path: Path) -> None:
    server.set(endless=True)
    with pytest.raises(IndexResponseError, match="is larger than 67108864 bytes; it is not an index page"):
        _client(server.url, tmp_path).list_files("cu128", "torch")


def test_a_bogus_charset_is_read_as_utf8(server: IndexServer, tmp_path: Path) -> None:
    body = server.project_html("cu128", "torch", server.knobs).encode()
    server.set(pages={"/cu128/torch/": ("text/html; charset=no-such-charset", body)})
    (file,) = _client(server.url, tmp_path).list_files("cu128", "torch")
    assert file.filename.startswith("torch-2.7.1+cu128")


def test_basic_auth_from_the_url_is_sent_and_never_stored(server: IndexServer, tmp_path: Path) -> None:
    server.set(auth=("ana", SECRET))
    host = server.url.removeprefix("http://")
    client = _client(f"http://ana:{SECRET}@{host}", tmp_path)
    assert client.base_url == server.url  # the credentials left the URL at once
    (file,) = client.list_files("cu128", "torch")
    assert SECRET not in file.url and "@" not in file.url
    # The wheel is on the same host: the download authenticates too.
    wheel = download(file, dest_dir=tmp_path / "dl")
    assert wheel.is_file()
    assert not [r for r in server.requests if r.served == "status:401"]
    cached = [p.read_text() for p in (tmp_path / "pages").iterdir()]
    assert cached and not any(SECRET in text or "ana" in text for text in cached)


def test_without_the_credentials_the_server_refuses(server: IndexServer, tmp_path: Path) -> None:
    """Shows the test above can fail: this index really does require them."""
    server.set(auth=("ana", SECRET))
    with pytest.raises(IndexResponseError, match="401") as caught:
        _client(server.url, tmp_path).list_files("cu128", "torch")
    assert "wants credentials" in (caught.value.hint or "")


def test_a_token_in_the_path_is_hidden_in_the_cache_and_restored_from_it(
    server: IndexServer, tmp_path: Path
) -> None:
    token = TOKEN
    page = server.project_html("cu128", "torch", server.knobs).replace('href="/', f'href="/{token}/')
    server.set(pages={f"/{token}/cu128/torch/": ("text/html", page.encode())})
    base = f"{server.url}/{token}"
    (first,) = _client(base, tmp_path).list_files("cu128", "torch")
    assert token in first.url  # the requests need it
    (cache_file,) = (tmp_path / "pages").iterdir()
    stored = cache_file.read_text()
    assert token not in stored and token not in cache_file.name
    assert json.loads(stored)["url"] == f"{server.url}/***/cu128/torch/"
    server.stop()  # a second client reads the cache only
    (again,) = _client(base, tmp_path).list_files("cu128", "torch")
    assert again.url == first.url


def test_messages_never_show_the_token(server: IndexServer, tmp_path: Path) -> None:
    token = TOKEN
    server.fail(10, 403)
    with pytest.raises(IndexResponseError) as caught:
        _client(f"{server.url}/{token}", tmp_path).list_files("cu128", "torch")
    text = f"{caught.value} {caught.value.hint}"
    assert "403" in text and token not in text and "/***/" in text


def test_a_json_page_nested_100k_deep_is_a_bad_response(server: IndexServer, tmp_path: Path) -> None:
    body = ('{"files": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    server.set(pages={"/cu128/torch/": ("application/vnd.pypi.simple.v1+json", body)})
    with pytest.raises(IndexResponseError, match="it nests too deeply"):
        _client(server.url, tmp_path).list_files("cu128", "torch")


def test_control_characters_in_index_base_are_one_line_and_exit_2(tmp_path: Path) -> None:
    hw = tmp_path / "hw.json"
    hw.write_text('{"gpus": []}')
    bad = "https://pkgs.example/wh\x01l"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchdoctor.agent",
            "check",
            "--no-discover",
            "--hardware",
            str(hw),
            "--index-base",
            bad,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "contains spaces or control characters" in done.stderr


def test_a_wheel_link_with_control_characters_is_skipped_with_a_note() -> None:
    page = (
        '<a href="https://h.example/torch-2.7.1%2Bcpu-py3-none-any.whl">ok</a>'
        '<a href="https://h.example/torch-2.7.0%2Bcpu-py3-none-any\x01.whl">bad</a>'
    )
    parsed = parse_simple_html(page, "https://h.example/cpu/torch/", "torch")
    assert [f.filename for f in parsed.files] == ["torch-2.7.1+cpu-py3-none-any.whl"]
    assert any("control characters" in note for note in parsed.notes)

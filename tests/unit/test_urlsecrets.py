"""Index credentials: taken out of the URL once, sent only to their host, shown nowhere."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from torchdoctor.service.install import urlsecrets
from torchdoctor.service.install.index import InsecureIndexError, validate_index_base


@pytest.fixture(autouse=True)
def _no_credentials() -> Iterator[None]:
    urlsecrets.forget_all()
    yield
    urlsecrets.forget_all()


def test_register_strips_userinfo_and_keeps_it_for_the_host() -> None:
    base = validate_index_base("https://ana:s3cr%40t@pkgs.example:8443/whl/")
    assert base == "https://pkgs.example:8443/whl"
    assert urlsecrets.credentials_for("https://pkgs.example:8443/whl/cu128/torch/") == ("ana", "s3cr@t")
    # Another port or host is another server: nothing is sent there.
    assert urlsecrets.credentials_for("https://pkgs.example/whl/") is None
    assert urlsecrets.credentials_for("https://cdn.example:8443/x") is None
    assert urlsecrets.with_credentials(f"{base}/cu128") == "https://ana:s3cr%40t@pkgs.example:8443/whl/cu128"


def test_auth_header_is_added_only_for_its_host_and_never_follows_a_redirect() -> None:
    validate_index_base("https://__token__:abc@pkgs.example/whl")
    handler = urlsecrets.AuthHandler()
    own = handler.http_request(urllib.request.Request("https://pkgs.example/whl/cu128/torch/"))
    assert own.get_header("Authorization") == "Basic X190b2tlbl9fOmFiYw=="
    # Unredirected: urllib's redirect handler copies only `headers`, never these.
    assert "Authorization" not in own.headers
    other = handler.http_request(urllib.request.Request("https://cdn.example/torch.whl"))
    assert other.get_header("Authorization") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@h.example/whl/cu128", "https://***@h.example/whl/cu128"),
        ("https://h.example/whl/cu128/torch/", "https://h.example/whl/cu128/torch/"),
        ("https://h.example/ghp_0123456789abcdefXYZ/simple", "https://h.example/***/simple"),
        ("https://h.example/simple?token=abc", "https://h.example/simple?***"),
        (
            "https://h.example/whl/cu128/torch-2.7.1%2Bcu128-cp312-cp312-manylinux_2_28_x86_64.whl",
            "https://h.example/whl/cu128/torch-2.7.1%2Bcu128-cp312-cp312-manylinux_2_28_x86_64.whl",
        ),
        ("http://127.0.0.1:8123/cu128", "http://127.0.0.1:8123/cu128"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert urlsecrets.redact(url) == shown


def test_hidden_parts_round_trip_through_a_cache_body() -> None:
    url = "https://h.example/tok3nABCDEFGH12345/whl/cu128/torch/"
    body = '<a href="/tok3nABCDEFGH12345/whl/cu128/torch/torch-2.7.1.whl">'
    stored = urlsecrets.hide_parts(body, url)
    assert "tok3nABCDEFGH12345" not in stored
    assert urlsecrets.unhide_parts(stored, url) == body


def test_redact_argv_for_crash_logs_and_lock_owner_files() -> None:
    argv = ["torchdoctor", "fix", "--index-base", "https://u:pw@h/whl", "--index-base=https://u:pw@h/x"]
    shown = urlsecrets.redact_argv(argv)
    assert "pw" not in " ".join(shown)
    assert shown[3] == "https://***@h/whl" and shown[4] == "--index-base=https://***@h/x"


@pytest.mark.parametrize("bad", ["https://h/\x01x", "https://h/a b", "https://h/\x7f", "https://h\n/x"])
def test_control_characters_and_spaces_are_not_a_url(bad: str) -> None:
    with pytest.raises(InsecureIndexError, match="spaces or control characters") as caught:
        validate_index_base(bad)
    assert caught.value.exit_code == 2


def test_credentials_travel_to_a_child_in_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    validate_index_base("https://ana:pw@pkgs.example/whl")
    passed = urlsecrets.child_environ()
    urlsecrets.forget_all()
    assert urlsecrets.credentials_for("https://pkgs.example/whl") is None
    monkeypatch.setenv(urlsecrets.AUTH_ENV, passed[urlsecrets.AUTH_ENV])
    assert urlsecrets.credentials_for("https://pkgs.example/whl/cpu/") == ("ana", "pw")
    monkeypatch.setenv(urlsecrets.AUTH_ENV, "not json")
    assert urlsecrets.credentials_for("https://pkgs.example/whl/cpu/") is None


def test_the_installers_do_not_inherit_torchdoctors_own_variable() -> None:
    from torchdoctor.service.install.installers import installer_environ

    assert urlsecrets.AUTH_ENV not in installer_environ({urlsecrets.AUTH_ENV: "{}", "PATH": "/bin"})

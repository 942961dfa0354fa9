"""Index credentials: sent where they belong, shown nowhere.

A private index is given as `--index-base https://user:token@host/path` or with the token in the
path (`https://host/<token>/simple`). The rules:
  - `register` takes the `user:pass@` part out of the URL once, when `--index-base` is read, and
    keeps it in this process only, keyed by host and port. Every URL torchdoctor passes around,
    caches, logs or prints after that has no userinfo.
  - urllib never sends userinfo by itself: `AuthHandler` adds `Authorization: Basic ...` to each
    request for that host and port, as an *unredirected* header, so a redirect to another host
    (a CDN) never receives it.
  - uv and pip get the index with its credentials through their environment
    (`UV_DEFAULT_INDEX`, `PIP_INDEX_URL`, see installers.py), never on a command line, which any
    user of the machine can read (/proc/<pid>/cmdline, Task Manager).
  - A child torchdoctor (the tray's `fix`) gets them in its environment (`child_environ`,
    TORCHDOCTOR_INDEX_AUTH), which only the same user can read, never in its arguments.
  - `redact` is how any index or file URL is written for a person or a file: no userinfo, no
    query string, and every path segment that looks like a token (16+ characters mixing letters
    and digits, no dots, or 32+ of any kind that is not a file name) replaced by `***`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import urllib.request
from typing import Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

_LOCK: Final = threading.Lock()
_CREDENTIALS: dict[str, tuple[str, str]] = {}  # "host:port" -> (user, password), unquoted
_SHOWN_AS: dict[str, str] = {}  # an index URL with a token in its path -> its redacted form
_HIDDEN: Final = "***"
AUTH_ENV: Final = "TORCHDOCTOR_INDEX_AUTH"  # {"host:port": [user, password]} from a parent torchdoctor
_FILE_SUFFIXES: Final = (".whl", ".metadata", ".tar.gz", ".zip", ".html", ".json")
_TOKENISH: Final = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-~+=]{16,}$")


def _key(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return f"{parts.hostname.lower()}:{port}"


def _netloc_without_userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def register(url: str) -> str:
    """Remember the `user:pass@` of `url` for its host and return `url` without it.

    A token in the path stays in the URL (it is how that index is reached) and is remembered, so
    `redact_known` hides it in whatever is printed: a plan's index line, a hand-run pip command.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        _remember_shown(url)
        return url
    key = _key(url)
    if key is not None and (parts.username is not None or parts.password is not None):
        with _LOCK:
            _CREDENTIALS[key] = (unquote(parts.username or ""), unquote(parts.password or ""))
    stripped = urlunsplit(parts._replace(netloc=_netloc_without_userinfo(parts.netloc)))
    _remember_shown(stripped)
    return stripped


def _remember_shown(url: str) -> None:
    base = url.rstrip("/")
    shown = redact(base)
    if shown != base:
        with _LOCK:
            _SHOWN_AS[base] = shown


def redact_known(text: str) -> str:
    """`text` with every registered index URL that holds a secret replaced by its redacted form."""
    with _LOCK:
        known = sorted(_SHOWN_AS.items(), key=lambda item: -len(item[0]))
    for url, shown in known:
        text = text.replace(url, shown)
    return text


def forget_all() -> None:
    """Drop every remembered credential (tests; a long-running tray switching indexes)."""
    with _LOCK:
        _CREDENTIALS.clear()
        _SHOWN_AS.clear()


def credentials_for(url: str) -> tuple[str, str] | None:
    key = _key(url)
    if key is None:
        return None
    with _LOCK:
        found = _CREDENTIALS.get(key)
    return found if found is not None else _inherited().get(key)


def _inherited() -> dict[str, tuple[str, str]]:
    """Credentials a parent torchdoctor passed down in AUTH_ENV (malformed: none)."""
    try:
        data = json.loads(os.environ.get(AUTH_ENV, "") or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): (v[0], v[1])
        for k, v in data.items()
        if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
    }


def child_environ() -> dict[str, str]:
    """What a child torchdoctor needs in its environment to use the credentials registered here."""
    with _LOCK:
        known = {**_inherited(), **_CREDENTIALS}
    return {AUTH_ENV: json.dumps({k: list(v) for k, v in known.items()})} if known else {}


def auth_header(url: str) -> str | None:
    """`Basic <base64>` for `url`'s host and port when credentials were registered for it."""
    found = credentials_for(url)
    if found is None:
        return None
    token = base64.b64encode(f"{found[0]}:{found[1]}".encode()).decode("ascii")
    return f"Basic {token}"


def with_credentials(url: str) -> str:
    """`url` with its host's registered `user:pass@` put back: only ever for an installer's environment."""
    found = credentials_for(url)
    if found is None:
        return url
    parts = urlsplit(url)
    user, password = (quote(v, safe="") for v in found)
    userinfo = f"{user}:{password}" if password else user
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{_netloc_without_userinfo(parts.netloc)}"))


def _secret_segment(segment: str) -> bool:
    text = unquote(segment)
    if text.lower().endswith(_FILE_SUFFIXES):
        return False
    if _TOKENISH.match(text) and "." not in text:
        return True
    return len(text) >= 32


def redact(url: str) -> str:
    """`url` as it may be shown or stored: no userinfo, no query, token-like path segments as ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_HIDDEN}@{_netloc_without_userinfo(netloc)}"
    path = "/".join(_HIDDEN if _secret_segment(s) else s for s in parts.path.split("/"))
    query = _HIDDEN if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def secret_parts(url: str) -> tuple[str, ...]:
    """The path segments of `url` that `redact` hides, longest first (as they appear in the URL)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ()
    found = {s for s in path.split("/") if s and _secret_segment(s)}
    return tuple(sorted(found, key=len, reverse=True))


def hide_parts(text: str, url: str) -> str:
    """`text` with `url`'s secret path segments replaced by placeholders `unhide_parts` reverses."""
    for i, part in enumerate(secret_parts(url)):
        text = text.replace(part, f"{{{{torchdoctor-secret-{i}}}}}")
    return text


def unhide_parts(text: str, url: str) -> str:
    for i, part in enumerate(secret_parts(url)):
        text = text.replace(f"{{{{torchdoctor-secret-{i}}}}}", part)
    return text


def redact_text(text: str, urls: tuple[str, ...]) -> str:
    """`text` with each of `urls` (as given, and with credentials put back) replaced by its redacted form."""
    for url in urls:
        for form in {with_credentials(url), url}:
            if form:
                text = text.replace(form, redact(form))
    return text


def redact_argv(argv: list[str]) -> list[str]:
    """A command line as it may be written to a crash log: every URL in it redacted."""
    shown: list[str] = []
    for arg in argv:
        option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        shown.append(f"{option}{eq}{redact(value)}" if "://" in value else arg)
    return shown


class AuthHandler(urllib.request.BaseHandler):
    """Adds the registered Basic credentials to requests for their own host and port only."""

    handler_order = 400  # before the HTTP handlers open the connection

    def _add(self, request: urllib.request.Request) -> urllib.request.Request:
        header = auth_header(request.full_url)
        if header is not None and not request.has_header("Authorization"):
            request.add_unredirected_header("Authorization", header)
        return request

    http_request = _add
    https_request = _add

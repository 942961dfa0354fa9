"""The package index client: which torch / torchvision / torchaudio wheels a variant's index offers.

For `--index-base BASE` and a variant (`cu128`, `cpu`, `rocm6.2`, `xpu`) the project page is
`BASE/<variant>/<project>/`. We ask for PEP 691 JSON and accept PEP 503 HTML (download.pytorch.org
serves HTML only); links may be relative, root-relative or absolute to another host
(download-r2.pytorch.org), and `#sha256=` is sometimes missing, so `IndexFile.sha256` is optional
and the installer enforces it wherever it is present.

What we refuse to repeat from light-the-torch (facts/peers.md §1, §7): versions are always
`packaging.version.Version`, never strings, and an unreachable index is an error (or a clearly
reported cached copy), never a silent fallback to PyPI.

Security: the index base and every file URL must be https; plain http only for loopback hosts
(the test index, a local mirror). Redirects are held to the same rule. Certificates are verified
(urllib's default context).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from http.client import HTTPException, HTTPMessage
from pathlib import Path, PurePosixPath
from typing import IO, Final, Protocol
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from torchdoctor.service import paths
from torchdoctor.service.errors import BadInputError, TorchdoctorError
from torchdoctor.service.facts.variants import DEFAULT_INDEX_BASE
from torchdoctor.service.install import cache
from torchdoctor.service.install.urlsecrets import AuthHandler, hide_parts, redact, register, unhide_parts

# PEP 691 content negotiation: JSON if the server has it, HTML otherwise.
ACCEPT: Final = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
JSON_TYPES: Final = frozenset(
    {"application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.latest+json"}
)
PROJECTS: Final = ("torch", "torchvision", "torchaudio")

# The all-variants torch page on download.pytorch.org is several MB; anything far larger is not an index.
_MAX_PAGE_BYTES: Final = 64 * 1024 * 1024
_MAX_BACKOFF_S: Final = 8.0
_MAX_RETRY_AFTER_S: Final = 10.0
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_MISSING_STATUSES: Final = frozenset({404, 410})
_CACHE_FORMAT: Final = 2  # 2: secret path segments hidden, url stored redacted
_READ_CHUNK: Final = 64 * 1024
_SHA256_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
_VARIANT_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CONTROL_RE: Final = re.compile(r"[\x00-\x20\x7f]")
# A whole page must arrive within this, however steadily the server trickles it (slow loris).
PAGE_DEADLINE_S: Final = 120.0


class InsecureIndexError(BadInputError):
    """An index or file URL that is not https (plain http is allowed only for loopback hosts)."""

    code = "insecure-index"


class IndexUnreachableError(TorchdoctorError):
    """The index could not be reached: we are offline, or it is down, and nothing is cached."""

    code = "index-unreachable"


class IndexResponseError(TorchdoctorError):
    """The index answered, but not with something we can use (403, a broken page, a bad hash)."""

    code = "index-bad-response"


class IndexTLSError(IndexUnreachableError):
    """The TLS handshake with the index failed: an untrusted or expired certificate, a proxy that
    rewrites TLS, a wrong clock, or no https server at that address. Not retried."""

    code = "index-tls-failed"


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One wheel the index offers, as the index describes it."""

    project: str  # normalised per PEP 503: "torch", "torchvision"
    filename: str  # "torch-2.7.1+cu128-cp312-cp312-win_amd64.whl"
    url: str  # absolute, without the #sha256= fragment
    version: Version
    tags: frozenset[Tag]
    sha256: str | None  # lower-case hex; None where the index gives no hash
    requires_python: str | None
    yanked: bool
    size: int | None
    has_metadata: bool = False  # PEP 658: the METADATA is served at `url + ".metadata"`
    metadata_sha256: str | None = None

    @property
    def local(self) -> str | None:
        """The local label: "cu128" for 2.7.1+cu128, None for a bare version."""
        return self.version.local

    @property
    def public_version(self) -> Version:
        """The release without the local label: Version("2.7.1")."""
        return Version(self.version.public)

    @property
    def metadata_url(self) -> str | None:
        return f"{self.url}.metadata" if self.has_metadata else None


@dataclass(frozen=True, slots=True)
class ParsedPage:
    files: tuple[IndexFile, ...]
    notes: tuple[str, ...] = ()  # links we skipped, one sentence each


@dataclass(frozen=True, slots=True)
class IndexPage:
    """A project page as fetched (or read from the cache)."""

    url: str
    files: tuple[IndexFile, ...]
    found: bool  # False: the index has no such project for this variant (404)
    from_cache: bool
    stale: bool  # a cached copy past its expiry, used because the index could not be reached
    fetched_at: float  # when the page was downloaded (epoch seconds)
    notes: tuple[str, ...] = field(default=())


class Response(Protocol):
    """What we read of an HTTP response (`http.client.HTTPResponse` has all of it)."""

    @property
    def headers(self) -> Message: ...

    def read(self, amt: int, /) -> bytes: ...

    def geturl(self) -> str: ...

    def __enter__(self) -> Response: ...

    def __exit__(self, *exc: object) -> object: ...


class Opener(Protocol):
    """What we need of `urllib.request.OpenerDirector`; tests may hand in their own."""

    def open(self, fullurl: urllib.request.Request, data: None = None, timeout: float = ...) -> Response: ...


# --- URL rules -------------------------------------------------------------------------------


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and the name localhost: traffic that never leaves this computer."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, what: str) -> None:
    """Raise InsecureIndexError unless `url` is https, or plain http to a loopback host.

    Whitespace and control characters are refused too: http.client would reject them later with
    a ValueError that reads as a crash, and a URL holding them is not one anyone meant.
    """
    if _CONTROL_RE.search(url):
        raise InsecureIndexError(
            f"The {what} {redact(url)!r} contains spaces or control characters; it is not a valid URL.",
            hint="give the index as https://host/path, e.g. " + DEFAULT_INDEX_BASE,
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise InsecureIndexError(f"The {what} {redact(url)!r} is not a valid URL ({exc}).") from exc
    scheme = parts.scheme.lower()
    if scheme == "https" and host:
        return
    if scheme == "http" and host:
        if is_loopback_host(host):
            return
        raise InsecureIndexError(
            f"The {what} {redact(url)} uses plain http; torchdoctor only downloads over https "
            "(plain http is allowed only for this computer's loopback address).",
            hint="use the https:// address of the index",
        )
    raise InsecureIndexError(
        f"The {what} {redact(url)!r} is not an https:// URL; torchdoctor only downloads over https.",
        hint="give the index as https://host/path, e.g. " + DEFAULT_INDEX_BASE,
    )


def validate_index_base(url: str) -> str:
    """Check an `--index-base` URL and return it without the trailing slash.

    Credentials in it (`https://user:token@host/...`) are taken out and remembered for that host
    (urlsecrets.register): the URL returned, and every URL derived from it, has none.
    """
    text = url.strip()
    check_url(text, what="index URL")
    return register(text).rstrip("/")


def _check_variant(variant: str) -> str:
    if not _VARIANT_RE.match(variant):
        raise BadInputError(f"{variant!r} is not a variant name (expected e.g. cu128, cpu, rocm6.2, xpu).")
    return variant


# --- parsing (pure) --------------------------------------------------------------------------


class _LinkParser(HTMLParser):
    """Collects `<a>` attributes and the first `<base href>`; attribute values arrive unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")


def _split_metadata(value: object) -> tuple[bool, str | None]:
    """PEP 658/714 `data-core-metadata` ("true" or "sha256=...") or PEP 691 `core-metadata`."""
    if value is None or value is False:
        return False, None
    if isinstance(value, Mapping):
        digest = value.get("sha256")
        return True, digest.lower() if isinstance(digest, str) and _SHA256_RE.match(digest) else None
    if isinstance(value, str):
        name, _, digest = value.partition("=")
        if name.lower() == "sha256" and _SHA256_RE.match(digest):
            return True, digest.lower()
        return value.strip().lower() != "false", None
    return bool(value), None


def _make_file(
    project: str,
    url: str,
    *,
    page_url: str,
    sha256: str | None,
    requires_python: str | None,
    yanked: bool,
    size: int | None,
    metadata: object,
    filename: str | None = None,
) -> IndexFile | _Refused | str | None:
    """One link -> an IndexFile, None (not a wheel) or a note saying why it was skipped."""
    name = filename or unquote(PurePosixPath(urlsplit(url).path).name)
    try:
        check_url(url, what=f"file link on {redact(page_url)}")
    except InsecureIndexError as exc:
        return _Refused(exc) if name.lower().endswith(".whl") else None
    if not name.lower().endswith(".whl"):
        return None
    try:
        dist, version, _build, tags = parse_wheel_filename(name)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        return f"skipped {name}: not a valid wheel file name ({exc})"
    if dist != project:
        return None  # another project's file on this page (flat pages list several)
    if sha256 is not None and not _SHA256_RE.match(sha256):
        # A hash we cannot check is worse than none: the installer could not enforce it.
        return f"skipped {name}: the index gives a malformed sha256 ({sha256!r})"
    has_metadata, metadata_sha256 = _split_metadata(metadata)
    return IndexFile(
        project=project,
        filename=name,
        url=url,
        version=version,
        tags=frozenset(tags),
        sha256=sha256.lower() if sha256 else None,
        requires_python=requires_python.strip() if requires_python and requires_python.strip() else None,
        yanked=yanked,
        size=size,
        has_metadata=has_metadata,
        metadata_sha256=metadata_sha256,
    )


@dataclass(frozen=True, slots=True)
class _Refused:
    """A wheel link that is not https: skipped, unless the page has nothing else to offer."""

    error: InsecureIndexError


def _collect(results: Iterable[IndexFile | _Refused | str | None]) -> ParsedPage:
    """One old plain-http link must not make a whole page unusable; a page of nothing but such
    links is refused outright (it would otherwise read as "nothing published")."""
    files: list[IndexFile] = []
    notes: list[str] = []
    refused: list[InsecureIndexError] = []
    for item in results:
        if isinstance(item, IndexFile):
            files.append(item)
        elif isinstance(item, _Refused):
            refused.append(item.error)
            notes.append(f"skipped a link: {item.error}")
        elif isinstance(item, str):
            notes.append(item)
    if refused and not files:
        raise refused[0]
    return ParsedPage(tuple(files), tuple(notes))


def parse_simple_html(body: str, page_url: str, project: str) -> ParsedPage:
    """Parse a PEP 503 project page. Relative hrefs resolve against `<base href>` or `page_url`."""
    parser = _LinkParser()
    parser.feed(body)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    name = canonicalize_name(project)

    def links() -> Iterable[IndexFile | _Refused | str | None]:
        for attrs in parser.anchors:
            href = attrs.get("href")
            if not href:
                continue
            url, fragment = urldefrag(urljoin(base, href.strip()))
            algo, _, digest = fragment.partition("=")
            yield _make_file(
                name,
                url,
                page_url=page_url,
                sha256=digest if algo.lower() == "sha256" else None,
                requires_python=attrs.get("data-requires-python"),
                yanked="data-yanked" in attrs,
                size=None,
                metadata=attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata")),
            )

    return _collect(links())


def parse_simple_json(body: str, page_url: str, project: str) -> ParsedPage:
    """Parse a PEP 691 project page (api-version 1.x)."""

    def bad(why: str) -> IndexResponseError:
        return IndexResponseError(
            f"The index page {redact(page_url)} is not PEP 691 JSON we can read: {why}."
        )

    try:
        data = json.loads(body)
    except ValueError as exc:
        raise bad(str(exc)) from exc
    except RecursionError:
        raise bad("it nests too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise bad("no 'files' list")
    meta = data.get("meta")
    api = meta.get("api-version") if isinstance(meta, dict) else None
    if isinstance(api, str) and not api.startswith("1."):
        raise bad(f"api-version {api} (we read 1.x)")
    name = canonicalize_name(project)

    def links() -> Iterable[IndexFile | _Refused | str | None]:
        for entry in data["files"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                raise bad("a file entry without a url")
            hashes = entry.get("hashes")
            digest = hashes.get("sha256") if isinstance(hashes, dict) else None
            requires = entry.get("requires-python")
            size = entry.get("size")
            filename = entry.get("filename")
            yield _make_file(
                name,
                urldefrag(urljoin(page_url, entry["url"]))[0],
                page_url=page_url,
                sha256=digest if isinstance(digest, str) else None,
                requires_python=requires if isinstance(requires, str) else None,
                # PEP 691: `yanked` is a bool or the reason (a non-empty string means yanked)
                yanked=bool(entry.get("yanked")),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                metadata=entry.get("core-metadata", entry.get("dist-info-metadata")),
                filename=filename if isinstance(filename, str) else None,
            )

    return _collect(links())


def parse_page(body: str, content_type: str, page_url: str, project: str) -> ParsedPage:
    """Pick the parser by the response's content type (PEP 691 JSON, else PEP 503 HTML)."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in JSON_TYPES or (mime == "application/json" and body.lstrip().startswith("{")):
        return parse_simple_json(body, page_url, project)
    return parse_simple_html(body, page_url, project)


def compatible(files: Iterable[IndexFile], tags: Sequence[Tag], python_version: str) -> tuple[IndexFile, ...]:
    """The files that install into an interpreter with these tags and this Python version.

    Keeps the input order. Yanked files are dropped (PEP 592: only an exact pin may pick them, and
    we never want one). An unreadable `Requires-Python` does not exclude a file (pip's behaviour).
    """
    supported = frozenset(tags)
    python = Version(python_version)
    kept: list[IndexFile] = []
    for item in files:
        if item.yanked or not (item.tags & supported):
            continue
        if item.requires_python is not None:
            try:
                if not SpecifierSet(item.requires_python).contains(python, prereleases=True):
                    continue
            except InvalidSpecifier:
                pass
        kept.append(item)
    return tuple(kept)


# --- fetching --------------------------------------------------------------------------------


class _SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs we would accept in the first place (no https -> http)."""

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        check_url(newurl, what=f"redirect target of {req.full_url}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def default_opener(base_url: str) -> urllib.request.OpenerDirector:
    """urllib with safe redirects, the registered index credentials (same host only), and proxies
    from the environment except for loopback indexes."""
    handlers: list[urllib.request.BaseHandler] = [_SafeRedirectHandler(), AuthHandler()]
    if is_loopback_host(urlsplit(base_url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))  # a proxy cannot reach our own loopback
    return urllib.request.build_opener(*handlers)


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - only on first use

    try:
        return f"torchdoctor/{version('torchdoctor')}"
    except PackageNotFoundError:
        return "torchdoctor"


@dataclass(frozen=True, slots=True)
class _Fetched:
    status: int  # 200, or 404/410 for "no such project"
    final_url: str
    content_type: str
    body: str
    fetched_at: float


class _Retryable(Exception):
    """One failed attempt that another attempt may fix; `reason` is said to the user.

    `status` is the HTTP status when the index answered (429, 5xx), None when it could not be reached.
    """

    def __init__(self, reason: str, retry_after: float | None = None, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


def _describe(exc: BaseException) -> str:
    """Turn a network exception into a few words a person understands."""
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return "the host name could not be resolved"
    if isinstance(reason, TimeoutError):
        return "the connection timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(reason, ConnectionResetError):
        return "the connection was reset"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate could not be verified ({reason.verify_message})"
    if isinstance(reason, _TLS_DROPS):
        return "the TLS connection broke off"
    if isinstance(reason, ssl.SSLError):
        return f"the TLS handshake failed ({reason.reason or reason})"
    if isinstance(reason, HTTPException):
        return f"the connection broke off ({type(reason).__name__})"
    return str(reason) or type(reason).__name__


def _status_text(exc: urllib.error.HTTPError) -> str:
    """ "404 Not Found": the status and, where the server gave one, its reason phrase."""
    reason = str(exc.reason or "").strip()
    return f"{exc.code} {reason}" if reason else str(exc.code)


# A TLS connection cut short is the network's doing, as a reset is; retried, not called a TLS problem.
_TLS_DROPS: Final = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _tls_reason(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind `exc` (urllib wraps it in URLError), or None if it is something else."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLError) and not isinstance(reason, _TLS_DROPS):
        return reason
    return None


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


class IndexClient:
    """Lists the wheels on `BASE/<variant>/<project>/`, with retries, backoff and an on-disk cache.

    `cache_dir` is the folder the pages are kept in (default: `paths.cache_dir()/index`). A cached
    page younger than `cache_ttl` seconds is used without asking the network; an older one is used
    only when the index cannot be reached, and then `notes` says so.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_INDEX_BASE,
        *,
        cache_dir: Path | None = None,
        timeout: float = 15.0,
        retries: int = 2,
        cache_ttl: float = 3600.0,
        opener: Opener | None = None,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        page_deadline: float = PAGE_DEADLINE_S,
    ) -> None:
        self.base_url = validate_index_base(base_url)
        self.timeout = timeout
        self.page_deadline = page_deadline
        self.retries = max(0, retries)
        self.cache_ttl = cache_ttl
        self.backoff = backoff
        self._cache_dir = cache_dir
        self._opener: Opener = opener if opener is not None else default_opener(self.base_url)
        self._sleep = sleep
        self._notes: list[str] = []
        self._missing: list[tuple[str, int]] = []
        self._found = False
        self._lock = threading.Lock()  # plan fetches pages from several threads
        self._user_agent = _user_agent()

    @property
    def notes(self) -> tuple[str, ...]:
        """Everything worth telling the user about the pages fetched so far (stale cache, skips)."""
        with self._lock:
            return tuple(self._notes)

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir if self._cache_dir is not None else cache.index_cache()

    def open_file(self, url: str, headers: Mapping[str, str] | None = None) -> Response:
        """GET a file the index links to (a wheel's `.metadata`, a byte range of a wheel) with
        this client's opener, timeout and user agent; the caller reads and closes the response.
        Raises InsecureIndexError for a URL that is neither https nor loopback, and urllib's
        errors as they come (metadata.py turns them into notes: metadata is a help, not a must)."""
        check_url(url, what="index file")
        request = urllib.request.Request(url, headers={"User-Agent": self._user_agent, **(headers or {})})  # noqa: S310
        return self._opener.open(request, timeout=self.timeout)

    def page_url(self, variant: str, project: str) -> str:
        return f"{self.base_url}/{_check_variant(variant)}/{canonicalize_name(project)}/"

    def list_files(self, variant: str, project: str) -> tuple[IndexFile, ...]:
        """The wheels of `project` on the `variant` index; empty when the index has no such project."""
        return self.fetch_page(variant, project).files

    def fetch_page(self, variant: str, project: str) -> IndexPage:
        url = self.page_url(variant, project)
        now = time.time()
        cached = self._read_cache(url)
        if cached is not None and now - cached.fetched_at < self.cache_ttl:
            return self._page(url, project, cached, from_cache=True, stale=False)
        try:
            fetched = self._fetch(url)
        except IndexUnreachableError as exc:
            if cached is None:
                raise
            note = (
                f"{exc.message} Using the copy of {redact(url)} cached {_age(now - cached.fetched_at)} ago; "
                "it may miss newer releases."
            )
            return self._page(url, project, cached, from_cache=True, stale=True, extra_notes=(note,))
        page = self._page(url, project, fetched, from_cache=False, stale=False)
        if fetched.status == 200:
            # Only pages we could read: a broken page or a 404 is asked again next time (a mirror
            # that was still syncing, or an --index-base fixed since, must not stay "missing").
            self._write_cache(url, fetched)
        else:
            with self._lock:
                self._missing.append((url, fetched.status))
        return page

    @property
    def missing(self) -> tuple[tuple[str, int], ...]:
        """The pages the index answered 404/410 for so far, as (url, status), in the order asked."""
        with self._lock:
            return tuple(self._missing)

    def raise_if_all_missing(self) -> None:
        """Raise IndexResponseError when every page asked for so far answered 404/410.

        One missing variant is normal (a mirror that carries cu128 but not cu118, no torchaudio on
        some indexes); *every* page missing means the --index-base is not the index it was meant
        to be, and saying "the index answered 404 at URL" beats saying "nothing fits".
        """
        with self._lock:
            missing = list(self._missing)
            found = self._found
        if not missing or found:
            return
        url, status = missing[0]
        others = len(missing) - 1
        also = f" (and {others} other page{'s' if others != 1 else ''} asked for)" if others else ""
        raise IndexResponseError(
            f"The package index answered {status} at {redact(url)}{also}: "
            f"{redact(self.base_url)} has none of the pages torchdoctor asked for.",
            hint=f"check --index-base {redact(self.base_url)}: torchdoctor reads BASE/<variant>/<project>/ "
            f"pages from it, e.g. {redact(url)}",
        )

    def _page(
        self,
        url: str,
        project: str,
        fetched: _Fetched,
        *,
        from_cache: bool,
        stale: bool,
        extra_notes: tuple[str, ...] = (),
    ) -> IndexPage:
        if fetched.status in _MISSING_STATUSES:
            parsed = ParsedPage(())
        else:
            parsed = parse_page(fetched.body, fetched.content_type, fetched.final_url, project)
        notes = extra_notes + tuple(f"{redact(url)}: {n}" for n in parsed.notes)
        with self._lock:
            self._notes.extend(notes)
            self._found = self._found or fetched.status not in _MISSING_STATUSES
        return IndexPage(
            url=url,
            files=parsed.files,
            found=fetched.status not in _MISSING_STATUSES,
            from_cache=from_cache,
            stale=stale,
            fetched_at=fetched.fetched_at,
            notes=notes,
        )

    def _fetch(self, url: str) -> _Fetched:
        attempts = self.retries + 1
        last = _Retryable("no answer")
        for attempt in range(attempts):
            if attempt:
                self._sleep(min(self.backoff * 2 ** (attempt - 1), _MAX_BACKOFF_S))
            try:
                return self._fetch_once(url)
            except _Retryable as exc:
                last = exc
                if exc.retry_after and attempt + 1 < attempts:
                    self._sleep(min(exc.retry_after, _MAX_RETRY_AFTER_S))
        tries = "once" if attempts == 1 else f"{attempts} times"
        if last.status is not None:
            # It answered: not "offline", but down or overloaded, and we say what it said.
            raise IndexUnreachableError(
                f"The package index answered {last.reason} at {redact(url)} (asked {tries}).",
                hint=f"the index at {redact(self.base_url)} is failing; try again later, "
                "or give --index-base another mirror",
            )
        raise IndexUnreachableError(
            f"Could not reach the package index at {redact(url)} (tried {tries}; {last.reason}).",
            hint=f"check the network connection and proxy settings, and that {_host(url)} is up "
            f"(the index in use is {redact(self.base_url)})",
        )

    def _fetch_once(self, url: str) -> _Fetched:
        # S310: `url` passed check_url (https, or http to loopback) in validate_index_base.
        request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": self._user_agent})  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = self._read_body(response, url)
                final_url = response.geturl() or url
                content_type = response.headers.get("Content-Type", "text/html")
                charset = response.headers.get_content_charset() or "utf-8"
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                if exc.code in _MISSING_STATUSES:
                    return _Fetched(exc.code, url, "", "", time.time())
                if exc.code in _RETRY_STATUSES:
                    raise _Retryable(_status_text(exc), _retry_after(exc.headers), status=exc.code) from exc
                hint = (
                    f"check that --index-base {redact(self.base_url)} is right and that this computer "
                    "may read it"
                )
                if exc.code == 401:
                    hint = (
                        f"{redact(self.base_url)} wants credentials (or refused the ones given): put them "
                        "in --index-base as https://USER:TOKEN@host/path; they are never shown or put on "
                        "a command line"
                    )
                raise IndexResponseError(
                    f"The package index answered {_status_text(exc)} at {redact(url)}.", hint=hint
                ) from exc
        except (urllib.error.URLError, ssl.SSLError) as exc:
            if _tls_reason(exc) is not None:
                raise self._tls_error(url, exc) from exc
            raise _Retryable(_describe(exc)) from exc
        except (TimeoutError, ConnectionError, HTTPException) as exc:
            raise _Retryable(_describe(exc)) from exc
        check_url(final_url, what="index page")
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            # A charset Python does not know ("charset=bogus"): index pages are ASCII in practice.
            text = body.decode("utf-8", errors="replace")
        return _Fetched(200, final_url, content_type, text, time.time())

    def _read_body(self, response: Response, url: str) -> bytes:
        """The body, refused past _MAX_PAGE_BYTES or when it has not all arrived by `page_deadline`.

        The socket timeout only bounds each read: a server trickling a byte every few seconds
        would otherwise hold `plan` (and the tray's check) forever.
        """
        started = time.monotonic()
        parts: list[bytes] = []
        size = 0
        # read1: whatever has arrived; read(n) would wait for all n bytes however slowly they come.
        read = getattr(response, "read1", response.read)
        while chunk := read(min(_READ_CHUNK, _MAX_PAGE_BYTES + 1 - size)):
            parts.append(chunk)
            size += len(chunk)
            if size > _MAX_PAGE_BYTES:
                raise IndexResponseError(
                    f"The index page {redact(url)} is larger than {_MAX_PAGE_BYTES} bytes; "
                    "it is not an index page.",
                    hint=f"check --index-base {redact(self.base_url)}",
                )
            elapsed = time.monotonic() - started
            if elapsed > self.page_deadline:
                raise IndexResponseError(
                    f"The package index sent {redact(url)} too slowly ({size} bytes in {elapsed:.0f} s).",
                    hint=f"the index at {redact(self.base_url)} is failing; try again later, "
                    "or give --index-base another mirror",
                )
        return b"".join(parts)

    def _tls_error(self, url: str, exc: BaseException) -> IndexTLSError:
        """Not worth retrying, and not "offline": the host answered, but TLS with it failed."""
        host = _host(url)
        return IndexTLSError(
            f"TLS/certificate problem with {host} at {redact(url)}: {_describe(exc)}.",
            hint=f"check that {host} serves https with a certificate this computer trusts "
            "(a self-signed certificate, a proxy that rewrites TLS or a wrong clock cause this; "
            "SSL_CERT_FILE names extra trusted certificates); "
            f"the index in use is {redact(self.base_url)}",
        )

    # The cache: one JSON file per page URL, written atomically so a reader never sees half a page.

    def _cache_path(self, url: str) -> Path:
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".json")

    def _read_cache(self, url: str) -> _Fetched | None:
        path = self._cache_path(url)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        try:
            if data["format"] != _CACHE_FORMAT or data["url"] != redact(url) or data["status"] != 200:
                return None  # older formats: asked again now
            fetched = _Fetched(
                int(data["status"]),
                unhide_parts(str(data["final_url"]), url),
                str(data["content_type"]),
                unhide_parts(str(data["body"]), url),
                float(data["fetched_at"]),
            )
            check_url(fetched.final_url, what="cached index page")
        except (KeyError, TypeError, ValueError, InsecureIndexError):
            return None  # a damaged or foreign cache file is just a miss
        cache.touch(path)  # recently used: evicted last
        return fetched

    def _write_cache(self, url: str, fetched: _Fetched) -> None:
        path = self._cache_path(url)
        # The file is named by a hash of the URL; inside, the URL is redacted and the URL's secret
        # path segments (a token in the path) are placeholders, put back from the URL on reading.
        record = {
            "format": _CACHE_FORMAT,
            "url": redact(url),
            "status": fetched.status,
            "final_url": hide_parts(fetched.final_url, url),
            "content_type": fetched.content_type,
            "fetched_at": fetched.fetched_at,
            "body": hide_parts(fetched.body, url),
        }
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            paths.private_dir(path.parent)
            paths.write_private(tmp, json.dumps(record))
            tmp.replace(path)
            cache.trim(path.parent, max_bytes=cache.INDEX_CACHE_MAX_BYTES, keep=(path,))
        except OSError as exc:
            with self._lock:
                self._notes.append(f"could not cache {redact(url)} in {path.parent}: {exc.strerror or exc}")
            with contextlib.suppress(OSError):
                tmp.unlink()


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; the backoff will do

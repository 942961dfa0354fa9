"""A real package index on 127.0.0.1 for the tests: PEP 503 HTML, PEP 691 JSON, PEP 658 metadata.

It serves a folder laid out like the PyTorch index, `<root>/<variant>/<project>/<wheels>`, at
`http://127.0.0.1:PORT/<variant>/<project>/`. Pages are generated per request from the wheels on
disk (so a test can publish more wheels while the server runs), in the shape PyTorch's generator
writes them (test-infra `s3_management/manage_v2.py`): root-relative hrefs with `%2B` for `+`,
`#sha256=` fragments, `data-dist-info-metadata` / `data-core-metadata`.

127.0.0.1, never `localhost`: on Windows `localhost` may try ::1 first and wait for a timeout
before falling back (pipx's tests/conftest.py learned this), and a proxy may not bypass the name.

Knobs a test can turn while it runs (all thread-safe):
  offer_json            answer PEP 691 JSON when the Accept header prefers it
  files_base            absolute file links to another server ("another host"), e.g. a second IndexServer
  hashes                False: no #sha256= / no JSON hashes (nightly pages, some aarch64 wheels)
  fail(n, status)       answer the next n requests with `status` (500 by default), then recover
  truncate_files_after  send only that many bytes of a wheel, then drop the connection
  drop_files            close the connection without answering wheel downloads (index went away)
  delay                 sleep this long before answering (timeouts)
  yanked                filename -> reason, served as data-yanked / "yanked"
  redirects             path -> Location, answered with 302
  pages                 path -> (content type, body): serve exactly this (recorded pages, garbage)
  ranges                False: ignore `Range` and send whole files (servers without range support)
  all_variants          False: no `/<project>/` page listing every variant's wheels (mirrors);
                        download.pytorch.org serves one at BASE/torch/
  metadata              False: no PEP 658 attributes and no `.metadata` files
  counts                requests per path (Counter), for cache tests; `requests` has the details
  auth                  (user, password): answer 401 unless the request carries that Basic auth
  trickle               send every 200 body one byte at a time, this many seconds apart (slow loris)
  endless               send every 200 body (pages and wheels) without a length, forever
  file_length           the Content-Length to claim for wheels, whatever their real size
  prefix                a first path segment (a token in a private index's path) that is
                        stripped before the path is looked up; paths without it work too
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

from tests.support.standin import StandIn, build_wheel

JSON_TYPE: Final = "application/vnd.pypi.simple.v1+json"
HOST: Final = "127.0.0.1"


def publish(root: Path, specs: Iterable[StandIn], variant: str) -> list[Path]:
    """Build stand-in wheels into `<root>/<variant>/<project>/` and return their paths."""
    built: list[Path] = []
    for spec in specs:
        built.append(build_wheel(spec, root / variant / canonicalize_name(spec.name)))
    return built


def torch_family(
    variant: str,
    *,
    torch: str = "2.7.1",
    torchvision: str | None = "0.22.1",
    torchaudio: str | None = "2.7.1",
    tags: Iterable[str] = ("py3-none-any",),
    requires_python: str | None = ">=3.9",
) -> list[StandIn]:
    """torch + companions for one variant, one wheel per tag, like a release on the PyTorch index.

    torch's `version.py` says the CUDA version of a `cuXYZ` variant, as the real wheels do.
    """
    cuda = f"{variant[2:-1]}.{variant[-1]}" if variant.startswith("cu") else None
    hip = variant[4:] if variant.startswith("rocm") else None
    specs: list[StandIn] = []
    for tag in tags:
        specs.append(
            StandIn(
                "torch", f"{torch}+{variant}", tag=tag, cuda=cuda, hip=hip, requires_python=requires_python
            )
        )
        if torchvision is not None:
            specs.append(
                StandIn(
                    "torchvision",
                    f"{torchvision}+{variant}",
                    tag=tag,
                    requires=[f"torch=={torch}"],
                    requires_python=requires_python,
                )
            )
        if torchaudio is not None:
            specs.append(
                StandIn(
                    "torchaudio",
                    f"{torchaudio}+{variant}",
                    tag=tag,
                    requires=[f"torch=={torch}"],
                    requires_python=requires_python,
                )
            )
    return specs


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    accept: str | None
    served: (
        str  # "html", "json", "canned", "file", "metadata", "status:<code>", "dropped", "truncated", "range"
    )


@dataclass(frozen=True, slots=True)
class _WheelInfo:
    sha256: str
    size: int
    requires_python: str | None
    metadata: bytes


def _read_wheel(path: Path) -> _WheelInfo:
    data = path.read_bytes()
    metadata = b""
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.endswith(".dist-info/METADATA") and name.count("/") == 1:
                metadata = zf.read(name)
                break
    requires = None
    for line in metadata.decode("utf-8", "replace").splitlines():
        if not line.strip():
            break  # headers end at the first blank line
        key, _, value = line.partition(":")
        if key.strip().lower() == "requires-python":
            requires = value.strip()
    return _WheelInfo(hashlib.sha256(data).hexdigest(), len(data), requires, metadata)


@dataclass
class _Knobs:
    offer_json: bool = False
    files_base: str | None = None
    hashes: bool = True
    metadata: bool = True
    fail_remaining: int = 0
    fail_status: int = 500
    truncate_files_after: int | None = None
    drop_files: bool = False
    delay: float = 0.0
    yanked: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    trickle: float | None = None
    endless: bool = False
    file_length: int | None = None
    ranges: bool = True
    all_variants: bool = True
    prefix: str | None = None


def _prefers_json(accept: str | None) -> bool:
    """True when the Accept header ranks PEP 691 JSON at least as high as HTML."""
    if not accept:
        return False
    best: dict[str, float] = {}
    for item in accept.split(","):
        mime, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[mime.lower()] = max(q, best.get(mime.lower(), 0.0))
    json_q = max(best.get(JSON_TYPE, 0.0), best.get("application/vnd.pypi.simple.latest+json", 0.0))
    html_q = max(best.get("text/html", 0.0), best.get("application/vnd.pypi.simple.v1+html", 0.0))
    return json_q > 0 and json_q >= html_q


class IndexServer:
    """The server; use `serve_index()` or `with IndexServer(root) as server:`."""

    def __init__(self, root: Path, *, offer_json: bool = False, files_base: str | None = None) -> None:
        self.root = root
        self.knobs = _Knobs(offer_json=offer_json, files_base=files_base)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self._wheel_cache: dict[tuple[Path, int, int], _WheelInfo] = {}
        self._httpd = ThreadingHTTPServer((HOST, 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def index_url(self, variant: str) -> str:
        """What pip's and uv's `--index-url` take: `http://127.0.0.1:PORT/cu128`."""
        return f"{self.url}/{variant}"

    def start(self) -> IndexServer:
        # A short poll interval: stop() waits for one, and the tests stop many servers.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=f"index-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and free the port (later connections are refused: "offline")."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> IndexServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- knobs -------------------------------------------------------------------------------

    def set(self, **changes: object) -> None:
        """Change knobs by name, e.g. `server.set(hashes=False, delay=2.0)`."""
        with self.lock:
            for key, value in changes.items():
                if not hasattr(self.knobs, key):
                    raise AttributeError(f"no knob {key!r}")
                setattr(self.knobs, key, value)

    def fail(self, times: int, status: int = 500) -> None:
        """Answer the next `times` requests with `status`, then serve normally again."""
        with self.lock:
            self.knobs.fail_remaining = times
            self.knobs.fail_status = status

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts[path]

    # --- content -----------------------------------------------------------------------------

    def wheel_info(self, path: Path) -> _WheelInfo:
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self.lock:
            info = self._wheel_cache.get(key)
        if info is None:
            info = _read_wheel(path)
            with self.lock:
                self._wheel_cache[key] = info
        return info

    def wheels(self, variant: str, project: str) -> list[Path]:
        folder = self.root / variant / canonicalize_name(project)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".whl")

    def file_url(self, variant: str, project: str, filename: str, *, absolute: str | None) -> str:
        # PyTorch's pages link root-relative (`/whl/cu128/torch-...%2Bcu128-...whl`) or, for R2,
        # absolutely to another host; both spell `+` as %2B.
        path = f"/{variant}/{canonicalize_name(project)}/{quote(filename)}"
        return f"{absolute.rstrip('/')}{path}" if absolute else path

    def project_html(self, variant: str, project: str, knobs: _Knobs) -> str:
        name = canonicalize_name(project)
        lines = ["<!DOCTYPE html>", "<html>", "  <body>", f"    <h1>Links for {name}</h1>"]
        for wheel in self.wheels(variant, name):
            info = self.wheel_info(wheel)
            href = self.file_url(variant, name, wheel.name, absolute=knobs.files_base)
            if knobs.hashes:
                href += f"#sha256={info.sha256}"
            attrs = f' href="{html.escape(href)}"'
            if info.requires_python:
                attrs += f' data-requires-python="{html.escape(info.requires_python)}"'
            if wheel.name in knobs.yanked:
                attrs += f' data-yanked="{html.escape(knobs.yanked[wheel.name])}"'
            if knobs.metadata and info.metadata:
                digest = hashlib.sha256(info.metadata).hexdigest()
                attrs += f' data-dist-info-metadata="sha256={digest}" data-core-metadata="sha256={digest}"'
            lines.append(f"    <a{attrs}>{html.escape(wheel.name)}</a><br/>")
        lines += ["  </body>", "</html>", f"<!--TIMESTAMP {int(time.time())}-->"]
        return "\n".join(lines) + "\n"

    def project_json(self, variant: str, project: str, knobs: _Knobs) -> str:
        name = canonicalize_name(project)
        files: list[dict[str, object]] = []
        versions: set[str] = set()
        for wheel in self.wheels(variant, name):
            info = self.wheel_info(wheel)
            versions.add(wheel.name.split("-")[1])
            digest = hashlib.sha256(info.metadata).hexdigest()
            files.append(
                {
                    "filename": wheel.name,
                    "url": self.file_url(variant, name, wheel.name, absolute=knobs.files_base),
                    "hashes": {"sha256": info.sha256} if knobs.hashes else {},
                    "requires-python": info.requires_python,
                    "yanked": knobs.yanked.get(wheel.name, False) or (wheel.name in knobs.yanked),
                    "core-metadata": {"sha256": digest} if knobs.metadata and info.metadata else False,
                    "size": info.size,
                }
            )
        page = {"meta": {"api-version": "1.1"}, "name": name, "versions": sorted(versions), "files": files}
        return json.dumps(page)

    def variants_of(self, project: str) -> list[str]:
        """The variants publishing `project` (none when `project` is itself a variant folder)."""
        if (self.root / project).is_dir() or not self.root.is_dir():
            return []
        name = canonicalize_name(project)
        return sorted(p.name for p in self.root.iterdir() if (p / name).is_dir())

    def all_variants_html(self, project: str, knobs: _Knobs) -> str:
        """`BASE/<project>/`: every variant's wheels on one page, as download.pytorch.org serves it."""
        name = canonicalize_name(project)
        lines = ["<!DOCTYPE html>", "<html>", "  <body>", f"    <h1>Links for {name}</h1>"]
        for variant in self.variants_of(name):
            for wheel in self.wheels(variant, name):
                info = self.wheel_info(wheel)
                href = self.file_url(variant, name, wheel.name, absolute=knobs.files_base)
                attrs = f' href="{html.escape(href)}#sha256={info.sha256}"'
                if knobs.metadata and info.metadata:
                    digest = hashlib.sha256(info.metadata).hexdigest()
                    attrs += (
                        f' data-dist-info-metadata="sha256={digest}" data-core-metadata="sha256={digest}"'
                    )
                lines.append(f"    <a{attrs}>{html.escape(wheel.name)}</a><br/>")
        lines += ["  </body>", "</html>"]
        return "\n".join(lines) + "\n"

    def variant_html(self, variant: str) -> str:
        folder = self.root / variant
        names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        links = [f'    <a href="{n}/">{n}</a><br/>' for n in names]
        return "\n".join(["<!DOCTYPE html>", "<html>", "  <body>", *links, "  </body>", "</html>"]) + "\n"


def _make_handler(server: IndexServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "torchdoctor-test-index/1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request log is `server.requests`; stderr noise would bury test output

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _record(self, path: str, served: str) -> None:
            with server.lock:
                server.requests.append(RequestRecord(self.command, path, self.headers.get("Accept"), served))

        def _serve(self, *, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            with server.lock:
                server.counts[path] += 1
                knobs = _Knobs(**{k: getattr(server.knobs, k) for k in server.knobs.__dataclass_fields__})
                failing = server.knobs.fail_remaining > 0
                if failing:
                    server.knobs.fail_remaining -= 1
            if knobs.delay:
                time.sleep(knobs.delay)
            if knobs.prefix is not None and path.startswith(f"/{knobs.prefix}/"):
                path = path.removeprefix(f"/{knobs.prefix}")
            if knobs.auth is not None:
                expected = "Basic " + base64.b64encode(":".join(knobs.auth).encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._record(path, "status:401")
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="index"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            if failing:
                self._record(path, f"status:{knobs.fail_status}")
                self._send(knobs.fail_status, b"injected failure\n", "text/plain", head=head)
                return
            if path in knobs.pages:
                content_type, body = knobs.pages[path]
                self._page(path, body, content_type, head, "canned")
                return
            if path in knobs.redirects:
                self._record(path, "status:302")
                self.send_response(302)
                self.send_header("Location", knobs.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            parts = [p for p in path.split("/") if p]
            if len(parts) == 1 and not path.endswith("/"):
                self._redirect_to_slash(path)
            elif len(parts) == 1 and knobs.all_variants and server.variants_of(parts[0]):
                body = server.all_variants_html(parts[0], knobs).encode()
                self._page(path, body, "text/html", head, "html")
            elif len(parts) == 1:
                self._page(path, server.variant_html(parts[0]).encode(), "text/html", head, "html")
            elif len(parts) == 2 and not path.endswith("/"):
                self._redirect_to_slash(path)
            elif len(parts) == 2:
                self._project(path, parts[0], parts[1], knobs, head)
            elif len(parts) == 3:
                self._file(path, parts, knobs, head)
            else:
                self._not_found(path, head)

        def _redirect_to_slash(self, path: str) -> None:
            self._record(path, "status:301")
            self.send_response(301)
            self.send_header("Location", path + "/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _not_found(self, path: str, head: bool) -> None:
            self._record(path, "status:404")
            self._send(404, b"not found\n", "text/plain", head=head)

        def _project(self, path: str, variant: str, project: str, knobs: _Knobs, head: bool) -> None:
            if canonicalize_name(project) != project:
                # PEP 503: the normalised name is the real page.
                self._record(path, "status:301")
                self.send_response(301)
                self.send_header("Location", f"/{variant}/{canonicalize_name(project)}/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not (server.root / variant / project).is_dir():
                self._not_found(path, head)
                return
            if knobs.offer_json and _prefers_json(self.headers.get("Accept")):
                body = server.project_json(variant, project, knobs).encode()
                self._page(path, body, JSON_TYPE, head, "json")
            else:
                body = server.project_html(variant, project, knobs).encode()
                self._page(path, body, "text/html", head, "html")

        def _page(self, path: str, body: bytes, content_type: str, head: bool, served: str) -> None:
            self._record(path, served)
            with server.lock:
                trickle, endless = server.knobs.trickle, server.knobs.endless
            if not head and (trickle is not None or endless):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.end_headers()
                self._misbehave(body, trickle, endless)
                return
            self._send(200, body, content_type, head=head)

        def _misbehave(self, body: bytes, trickle: float | None, endless: bool) -> None:
            """Slow loris (a byte every `trickle` s) or a body without end, until the client hangs up."""
            self.close_connection = True
            try:
                if endless:
                    block = b"\0" * 65536
                    while True:
                        self.wfile.write(block)
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(trickle or 0.0)
            except OSError:
                pass  # the client gave up, as it should

        def _file(self, path: str, parts: list[str], knobs: _Knobs, head: bool) -> None:
            variant, project, filename = parts
            wanted_metadata = filename.endswith(".whl.metadata")
            wheel = server.root / variant / project / filename.removesuffix(".metadata")
            if not wheel.is_file() or (wanted_metadata and not knobs.metadata):
                self._not_found(path, head)
                return
            if wanted_metadata:
                self._record(path, "metadata")
                self._send(200, server.wheel_info(wheel).metadata, "text/plain", head=head)
                return
            if knobs.drop_files:
                self._record(path, "dropped")
                self.close_connection = True
                return  # no status line at all: the client sees the connection close
            size = wheel.stat().st_size
            span = _byte_range(self.headers.get("Range"), size) if knobs.ranges else None
            if span is not None:
                # Only the asked bytes are read: a real torch wheel is over 500 MB.
                start, end = span
                with wheel.open("rb") as f:
                    f.seek(start)
                    part = f.read(end - start + 1)
                self._record(path, "range")
                self.send_response(206)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if not head:
                    self.wfile.write(part)
                return
            data = wheel.read_bytes()
            cut = knobs.truncate_files_after
            self._record(path, "file" if cut is None else "truncated")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if not knobs.endless:
                length = knobs.file_length if knobs.file_length is not None else len(data)
                self.send_header("Content-Length", str(length))
            self.end_headers()
            if head:
                return
            if knobs.trickle is not None or knobs.endless:
                self._misbehave(data, knobs.trickle, knobs.endless)
                return
            if cut is None:
                self.wfile.write(data)
                return
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()

        def _send(self, status: int, body: bytes, content_type: str, *, head: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    return Handler


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """RFC 9110 single ranges: `bytes=A-B`, `bytes=A-`, `bytes=-N`; None: serve the whole file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header.removeprefix("bytes=").strip().partition("-")
    if not first:
        length = int(last)
        return (max(0, size - length), size - 1) if length > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end else None


@contextmanager
def serve_index(
    root: Path, *, offer_json: bool = False, files_base: str | None = None
) -> Iterator[IndexServer]:
    """Run an IndexServer for the duration of a `with` block."""
    server = IndexServer(root, offer_json=offer_json, files_base=files_base)
    with server:
        yield server


class IndexServerFactory:
    """For a fixture: `factory(root, ...)` starts a server; `close()` stops them all."""

    def __init__(self) -> None:
        self._servers: list[IndexServer] = []

    def __call__(self, root: Path, *, offer_json: bool = False, files_base: str | None = None) -> IndexServer:
        server = IndexServer(root, offer_json=offer_json, files_base=files_base).start()
        self._servers.append(server)
        return server

    def close(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()

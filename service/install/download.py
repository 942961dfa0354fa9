"""Downloading the planned wheels ourselves, so every hash the index publishes is enforced.

pip's `--require-hashes` would demand hashes for every dependency too (sympy, nvidia-* ...), which
the plan does not choose; so torchdoctor fetches the torch-family wheels itself, checks each
`sha256` (and size) the index gave, and hands the installer local files. A CUDA torch wheel is
2-3 GB: it is streamed to a `.part` file with progress, renamed only when complete and verified,
and kept in the cache so a retried `fix` does not download it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from torchdoctor.service import paths
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.install.hashing import CHUNK, sha256_file
from torchdoctor.service.install.index import IndexFile, check_url, default_opener

# Statuses another attempt may fix; any other error status is the answer (404: not there, 403: refused).
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Progress = Callable[[IndexFile, int, int | None], None]  # file, bytes so far, total


class DownloadError(TorchdoctorError):
    """A wheel could not be downloaded completely (network, server, or a hash that does not match)."""

    code = "download-failed"


def wheel_cache() -> Path:
    return paths.cache_dir() / "wheels"


def _cached(file: IndexFile, dest: Path) -> bool:
    """A complete earlier download is reused only when it can be proven to be the same file."""
    if not dest.is_file() or file.sha256 is None:
        return False
    return sha256_file(dest) == file.sha256


def download(
    file: IndexFile,
    *,
    dest_dir: Path | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: Progress | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> Path:
    """Fetch one wheel into `dest_dir` (the wheel cache by default) and return its path."""
    check_url(file.url, what="wheel URL")
    folder = dest_dir if dest_dir is not None else wheel_cache()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / file.filename
    if _cached(file, dest):
        if progress is not None:
            progress(file, dest.stat().st_size, dest.stat().st_size)
        return dest
    open_url = opener or default_opener(file.url)
    unchanged = "nothing in the environment was changed"
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0**attempt, 10.0))
        try:
            return _fetch(file, dest, open_url, timeout, progress)
        except DownloadError:
            raise  # a hash or size mismatch does not get better by asking again
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                last = exc
                if exc.code not in _RETRY_STATUSES:
                    raise _status_error(file, exc, unchanged) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                host = _host(file.url)
                raise DownloadError(
                    f"could not download {file.filename}: TLS/certificate problem with {host} "
                    f"at {file.url} ({tls})",
                    hint=f"check that {host} serves https with a certificate this computer trusts "
                    f"(SSL_CERT_FILE names extra trusted certificates); {unchanged}",
                ) from exc
            last = exc
    if isinstance(last, urllib.error.HTTPError):
        raise _status_error(file, last, unchanged, asked=retries + 1)
    reason = getattr(last, "reason", None) or last
    raise DownloadError(
        f"could not download {file.filename} from {file.url}: {reason}",
        hint=f"check the network connection and that {_host(file.url)} is up, then try again; {unchanged}",
    )


def _host(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2] or url


def _status_error(
    file: IndexFile, exc: urllib.error.HTTPError, unchanged: str, *, asked: int = 1
) -> DownloadError:
    """ "the server answered 404 Not Found at URL": what it said, where, and how often we asked."""
    reason = str(exc.reason or "").strip()
    status = f"{exc.code} {reason}" if reason else str(exc.code)
    times = f" (asked {asked} times)" if asked > 1 else ""
    if exc.code in {404, 410}:
        hint = f"the index listed a file its server does not have; try again later; {unchanged}"
    elif exc.code in _RETRY_STATUSES:
        hint = f"the server at {_host(file.url)} is failing; try again later; {unchanged}"
    else:
        hint = f"check that this computer may read from {_host(file.url)}; {unchanged}"
    return DownloadError(
        f"could not download {file.filename}: the server answered {status} at {file.url}{times}",
        hint=hint,
    )


def _tls_failure(exc: BaseException) -> str | None:
    """Words for a TLS failure behind `exc` (a certificate, a handshake), None for anything else.

    A TLS connection cut short (EOF) is the network's doing and is retried like a reset.
    """
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its certificate could not be verified: {reason.verify_message}"
    if isinstance(reason, ssl.SSLError) and not isinstance(
        reason, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError
    ):
        return f"the TLS handshake failed: {reason.reason or reason}"
    return None


def _fetch(
    file: IndexFile,
    dest: Path,
    opener: urllib.request.OpenerDirector,
    timeout: float,
    progress: Progress | None,
) -> Path:
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(file.url, headers={"User-Agent": "torchdoctor"})  # noqa: S310 - https or loopback, checked above
    digest = hashlib.sha256()
    done = 0
    try:
        with opener.open(request, timeout=timeout) as response, part.open("wb") as out:
            header = response.headers.get("Content-Length")
            total = int(header) if header and header.isdigit() else file.size
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(file, done, total)
        if total is not None and done != total:
            raise OSError(f"the connection closed after {done} of {total} bytes")
        if file.sha256 is not None and digest.hexdigest() != file.sha256:
            raise DownloadError(
                f"{file.filename} does not match the sha256 the index published "
                f"(expected {file.sha256[:16]}..., got {digest.hexdigest()[:16]}...)",
                hint="the download was corrupted or the file was replaced; nothing was installed",
            )
        part.replace(dest)
        return dest
    finally:
        part.unlink(missing_ok=True)


def remote_size(
    url: str, *, timeout: float = 10.0, opener: urllib.request.OpenerDirector | None = None
) -> int | None:
    """The wheel's size from a HEAD request, or None when the server does not say (or is away).

    download.pytorch.org serves PEP 503 HTML, which carries no sizes; the tray's "Reinstall torch
    2.7.1+cu128 (2.4 GB)" label still wants one, and a HEAD costs no download.
    """
    check_url(url, what="wheel URL")
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "torchdoctor"})  # noqa: S310 - https or loopback, checked above
    try:
        with (opener or default_opener(url)).open(request, timeout=timeout) as response:
            header = response.headers.get("Content-Length")
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        return None
    return int(header) if header and header.isdigit() else None

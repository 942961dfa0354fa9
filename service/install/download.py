"""Downloading the planned wheels ourselves, so every hash the index publishes is enforced.

pip's `--require-hashes` would demand hashes for every dependency too (sympy, nvidia-* ...), which
the plan does not choose; so torchdoctor fetches the torch-family wheels itself, checks each
`sha256` (and size) the index gave, and hands the installer local files. A CUDA torch wheel is
2-3 GB: it is streamed to a `.part` file with progress, renamed only when complete and verified,
and kept in the cache so a retried `fix` does not download it again.

Limits, because the tray runs `fix` unattended against an index it cannot vouch for:
  size      the index's `size` (PEP 691), else the response's Content-Length, else
            MAX_WHEEL_BYTES (6 GiB: the largest CUDA torch wheels are ~3.5 GB). A body longer
            than its declared size is cut off and refused, as is a declared size over the cap.
  stalls    at least STALL_MIN_BYTES must arrive in every STALL_WINDOW_S seconds; a server that
            sends a byte every few seconds (slow loris) never trips the socket timeout otherwise.
  deadline  DOWNLOAD_DEADLINE_S for a whole file, whatever the rate.
  disk      ENOSPC / EDQUOT is DiskFullError (code `disk-full`), naming the folder and the size
            needed; it is not retried and never called a network problem. The free space is
            checked before the first byte when the size is known.
Partial files are named `<wheel>.<pid>.part`, so two processes never share one, and a `.part`
left by a killed process (its pid no longer running) is removed by the next download.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from torchdoctor.service import paths
from torchdoctor.service.boundedio import describe_size
from torchdoctor.service.errors import TorchdoctorError
from torchdoctor.service.install import cache
from torchdoctor.service.install.hashing import CHUNK, sha256_file
from torchdoctor.service.install.index import IndexFile, check_url, default_opener
from torchdoctor.service.install.urlsecrets import redact

# Statuses another attempt may fix; any other error status is the answer (404: not there, 403: refused).
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Progress = Callable[[IndexFile, int, int | None], None]  # file, bytes so far, total

MAX_WHEEL_BYTES: Final = 6 * 1024**3
STALL_WINDOW_S: Final = 60.0
STALL_MIN_BYTES: Final = 64 * 1024
DOWNLOAD_DEADLINE_S: Final = 4 * 3600.0  # 3.5 GB at 250 KB/s
_DISK_FULL: Final = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_PART: Final = cache.PART_SUFFIX


@dataclass(frozen=True, slots=True)
class Limits:
    """How much and how slowly a download may arrive (module constants by default; tests shrink them)."""

    max_bytes: int = MAX_WHEEL_BYTES
    stall_window: float = STALL_WINDOW_S
    stall_min_bytes: int = STALL_MIN_BYTES
    deadline: float = DOWNLOAD_DEADLINE_S
    wheel_cache_bytes: int = cache.WHEEL_CACHE_MAX_BYTES


class DownloadError(TorchdoctorError):
    """A wheel could not be downloaded completely (network, server, or a hash that does not match)."""

    code = "download-failed"


class DownloadRefusedError(DownloadError):
    """The server sent more, or far more slowly, than a wheel can be: not retried."""


class DiskFullError(TorchdoctorError):
    """The disk (or the user's quota) holding the download folder is full: not a network problem."""

    code = "disk-full"


def disk_full(folder: Path, needed: int | None) -> DiskFullError:
    how_much = f" ({describe_size(needed)} needed)" if needed else ""
    return DiskFullError(
        f"the disk holding {folder} is full{how_much}",
        hint="free space there or run `torchdoctor cache clean`; nothing in the environment was changed",
    )


def wheel_cache() -> Path:
    return cache.wheel_cache()


def _cached(file: IndexFile, dest: Path) -> bool:
    """A complete earlier download is reused only when it can be proven to be the same file."""
    if not dest.is_file() or file.sha256 is None:
        return False
    if sha256_file(dest) != file.sha256:
        return False
    cache.touch(dest)  # most recently used: the last to be evicted
    return True


def download(
    file: IndexFile,
    *,
    dest_dir: Path | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: Progress | None = None,
    opener: urllib.request.OpenerDirector | None = None,
    limits: Limits | None = None,
) -> Path:
    """Fetch one wheel into `dest_dir` (the wheel cache by default) and return its path."""
    check_url(file.url, what="wheel URL")
    limits = limits or Limits()
    _check_cap(file, file.size, limits)  # before any request: the index already said too much
    folder = dest_dir if dest_dir is not None else wheel_cache()
    paths.private_dir(folder)
    remove_stale_parts(folder)
    dest = folder / file.filename
    path = _download(
        file, dest, timeout=timeout, retries=retries, progress=progress, opener=opener, limits=limits
    )
    if dest_dir is None:
        cache.trim(folder, max_bytes=limits.wheel_cache_bytes, keep=(path,))
    return path


def _download(
    file: IndexFile,
    dest: Path,
    *,
    timeout: float,
    retries: int,
    progress: Progress | None,
    opener: urllib.request.OpenerDirector | None,
    limits: Limits,
) -> Path:
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
            return _fetch(file, dest, open_url, timeout=timeout, progress=progress, limits=limits)
        except (DownloadError, DiskFullError):
            raise  # a hash or size mismatch, or a full disk, does not get better by asking again
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
                    f"at {redact(file.url)} ({tls})",
                    hint=f"check that {host} serves https with a certificate this computer trusts "
                    f"(SSL_CERT_FILE names extra trusted certificates); {unchanged}",
                ) from exc
            last = exc
    if isinstance(last, urllib.error.HTTPError):
        raise _status_error(file, last, unchanged, asked=retries + 1)
    reason = getattr(last, "reason", None) or last
    raise DownloadError(
        f"could not download {file.filename} from {redact(file.url)}: {reason}",
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
        f"could not download {file.filename}: the server answered {status} at {redact(file.url)}{times}",
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


def remove_stale_parts(folder: Path) -> list[Path]:
    """Remove `.part` files whose writer is gone (SIGKILL, power loss); return what was removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.endswith(_PART)]
    except OSError:
        return removed
    for part in candidates:
        if cache.part_owner_running(part):
            continue  # another running download's file
        with contextlib.suppress(OSError):
            part.unlink()
            removed.append(part)
    return removed


def _declared_size(file: IndexFile, header: str | None, limits: Limits) -> int | None:
    """The size the body must have: the index's, else Content-Length; refused when it passes the cap."""
    length = int(header) if header and header.isdigit() else None
    if file.size is not None and length is not None and length != file.size:
        raise DownloadRefusedError(
            f"could not download {file.filename}: the server says it is {length} bytes, "
            f"the index said {file.size}",
            hint="the index and its file server disagree; nothing was installed",
        )
    size = file.size if file.size is not None else length
    _check_cap(file, size, limits)
    return size


def _check_cap(file: IndexFile, size: int | None, limits: Limits) -> None:
    if size is not None and size > limits.max_bytes:
        raise DownloadRefusedError(
            f"could not download {file.filename}: it is {describe_size(size)}, more than the "
            f"{describe_size(limits.max_bytes)} a wheel may be",
            hint="that is not a torch wheel; check --index-base; nothing was installed",
        )


def _check_free_space(folder: Path, needed: int | None) -> None:
    if needed is None:
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise disk_full(folder, needed)


def _fetch(
    file: IndexFile,
    dest: Path,
    opener: urllib.request.OpenerDirector,
    *,
    timeout: float,
    progress: Progress | None,
    limits: Limits,
) -> Path:
    part = dest.with_name(f"{dest.name}.{os.getpid()}{_PART}")
    request = urllib.request.Request(file.url, headers={"User-Agent": "torchdoctor"})  # noqa: S310 - https or loopback, checked above
    digest = hashlib.sha256()
    done = 0
    total: int | None = file.size
    started = time.monotonic()
    window_start, window_bytes = started, 0
    try:
        with opener.open(request, timeout=timeout) as response:
            total = _declared_size(file, response.headers.get("Content-Length"), limits)
            _check_free_space(dest.parent, total)
            cap = total if total is not None else limits.max_bytes
            # read1: whatever has arrived; read(n) would wait for all n bytes, however slowly they came.
            read = getattr(response, "read1", response.read)
            with paths.open_private(part, "wb") as out:
                while chunk := read(min(CHUNK, cap + 1 - done)):
                    done += len(chunk)
                    if done > cap:
                        raise _too_long(file, total, cap)
                    out.write(chunk)
                    digest.update(chunk)
                    if progress is not None:
                        progress(file, done, total)
                    now = time.monotonic()
                    window_bytes += len(chunk)
                    if now - started > limits.deadline:
                        raise _too_slow(file, f"it took more than {limits.deadline:g} s", done, total)
                    if now - window_start >= limits.stall_window:
                        if window_bytes < limits.stall_min_bytes:
                            raise _too_slow(
                                file,
                                f"only {window_bytes} bytes arrived in {now - window_start:.0f} s",
                                done,
                                total,
                            )
                        window_start, window_bytes = now, 0
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
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise disk_full(dest.parent, total) from None
        raise
    finally:
        part.unlink(missing_ok=True)


def _too_long(file: IndexFile, total: int | None, cap: int) -> DownloadRefusedError:
    said = f"the {total} bytes it declared" if total is not None else f"the {describe_size(cap)} cap"
    return DownloadRefusedError(
        f"could not download {file.filename}: the server sent more than {said}",
        hint="that is not the wheel the index listed; nothing was installed",
    )


def _too_slow(file: IndexFile, why: str, done: int, total: int | None) -> DownloadRefusedError:
    of = f" of {total}" if total is not None else ""
    return DownloadRefusedError(
        f"could not download {file.filename}: the server is too slow ({why}; {done}{of} bytes received "
        f"from {_host(file.url)})",
        hint="try again later or use another --index-base; nothing was installed",
    )


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

"""Reading the GPU architectures a torch build was compiled for from its own library, without
importing it.

`torch.cuda.get_arch_list()` returns `torch._C._cuda_getArchFlags().split()`, and that function
returns a compile-time string constant (`C10_STRINGIZE(CUDA_ARCH_FLAGS)` in
torch/csrc/cuda/Module.cpp). The literal therefore sits in the read-only data of the Python
extension library. Measured here on the real torch-2.14.1 (cu130) Linux wheel:
`torch/lib/libtorch_python.so` holds exactly one run `sm_75 sm_80 sm_86 sm_90 sm_100 sm_120`; the
CPU wheel's library holds none. On Windows the library is `torch/lib/torch_python.dll` (not yet
verified on a real wheel: this machine cannot reach download.pytorch.org. The format is the same
macro, so the scan is the same; tests/unit/test_archscan.py reads the real cu128 Windows wheel's DLL
by HTTP range requests wherever the index can be reached, and says why it skipped otherwise).

Used only for releases the knowledge data does not know, where it replaces an inferred list with
the build's own. A scan reads ~35 MB (about 25 ms warm), so results are cached by file identity.
"""

from __future__ import annotations

import json
import mmap
import re
from pathlib import Path
from typing import Final

from torchdoctor.service import paths
from torchdoctor.service.facts.knowledge import ArchList
from torchdoctor.service.models import ComputeCapability

LIBRARIES: Final = ("lib/libtorch_python.so", "lib/torch_python.dll", "lib/libtorch_python.dylib")
_RUN: Final = re.compile(rb"(?:sm|compute)_\d{2,3}[af]?(?: (?:sm|compute)_\d{2,3}[af]?)+")
_TOKEN: Final = re.compile(r"^(sm|compute)_(\d{2,3})[af]?$")
_CACHE_VERSION: Final = 1
_CACHE_ENTRIES: Final = 256  # newest kept; one per torch install seen


def parse_arch_flags(text: str, source: str) -> ArchList | None:
    """ "sm_75 sm_80 sm_120 compute_120" -> ArchList; None when no sm_ token is in it."""
    codes: set[ComputeCapability] = set()
    ptx: ComputeCapability | None = None
    for token in text.split():
        match = _TOKEN.match(token)
        if not match:
            continue
        cc = ComputeCapability.from_sm(int(match.group(2)))
        if match.group(1) == "sm":
            codes.add(cc)
        else:
            ptx = cc if ptx is None else max(ptx, cc)
    if not codes:
        return None
    return ArchList(tuple(sorted(codes)), ptx, source)


def scan_library(path: Path) -> str | None:
    """The longest run of sm_/compute_ tokens in a binary, or None."""
    best = b""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for needle in (b"sm_", b"compute_"):
            pos = 0
            while (i := data.find(needle, pos)) != -1:
                match = _RUN.match(data, i)
                if match and len(match.group(0)) > len(best):
                    best = match.group(0)
                pos = i + len(needle)
    return best.decode("ascii") if best else None


def _cache_file() -> Path:
    return paths.cache_dir() / "arch-flags.json"


def _load_cache() -> dict[str, str | None]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {str(k): (v if isinstance(v, str) else None) for k, v in entries.items()}


def _save_cache(entries: dict[str, str | None]) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": _CACHE_VERSION, "entries": entries}), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs a rescan next time


def read_arch_flags(torch_dir: Path) -> ArchList | None:
    """The compiled architectures of the torch package at `torch_dir`, or None (CPU build, no
    library, unreadable). Never raises for a damaged install: that is the reader's finding."""
    for rel in LIBRARIES:
        lib = torch_dir / rel
        try:
            stat = lib.stat()
        except OSError:
            continue
        key = f"{lib.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        cache = _load_cache()
        if key in cache:
            text = cache[key]
        else:
            try:
                text = scan_library(lib)
            except (OSError, ValueError):
                return None
            cache[key] = text
            _save_cache(dict(list(cache.items())[-_CACHE_ENTRIES:]))
        return parse_arch_flags(text, f"read from {lib.name}") if text else None
    return None

"""How quickly, and in how much memory, does torchdoctor refuse hostile input?

Target (issue 9 item 11): each ends in one line and exit 2 "within a second or two", never a hang.
Prints, per input, the wall time and exit status of `torchdoctor hardware --hardware FILE` (a real
CLI process), and the peak Python memory of reading a zip bomb's METADATA (64 MiB of zeros in a
~65 KB wheel; a 1.5 GiB bomb is refused the same way, by its declared size, before unpacking).
Run: `.venv/bin/python benchmarks/hostile_inputs.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchdoctor.service.boundedio import BoundedReadError
from torchdoctor.service.envs.builds import wheel_requirements


def _inputs(folder: Path) -> dict[str, Path]:
    made: dict[str, Path] = {}
    if hasattr(os, "mkfifo"):
        made["fifo"] = folder / "fifo.json"
        os.mkfifo(made["fifo"])
    if Path("/dev/zero").exists():
        made["/dev/zero"] = Path("/dev/zero")
    made["json 100k deep"] = folder / "deep.json"
    made["json 100k deep"].write_text("[" * 100_000 + "]" * 100_000)
    made["200,000 GPUs"] = folder / "gpus.json"
    gpus = [{"name": "NVIDIA X", "compute_capability": "8.6"}] * 200_000
    made["200,000 GPUs"].write_text(json.dumps({"driver_version": "572.16", "gpus": gpus}))
    return made


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="td-hostile-") as tmp:
        folder = Path(tmp)
        env = dict(os.environ, TORCHDOCTOR_STATE_DIR=tmp, TORCHDOCTOR_CACHE_DIR=tmp, TORCHDOCTOR_LOG_DIR=tmp)
        print(f"{'input':<16} {'seconds':>8} {'exit':>5}  first line")
        for name, path in _inputs(folder).items():
            began = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "torchdoctor.agent", "hardware", "--hardware", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=env,
            )
            took = time.perf_counter() - began
            print(f"{name:<16} {took:>8.2f} {done.returncode:>5}  {done.stderr.strip()[:90]}")
        bomb = folder / "torch-2.7.1-py3-none-any.whl"
        with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr("torch-2.7.1.dist-info/METADATA", b"\0" * (64 * 1024 * 1024))
        tracemalloc.start()
        began = time.perf_counter()
        outcome = "read (the cap did not hold)"
        try:
            wheel_requirements(bomb)
        except BoundedReadError as exc:
            outcome = str(exc)
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"zip bomb ({bomb.stat().st_size} bytes): {took:.3f} s, peak {peak / 2**20:.1f} MiB: {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

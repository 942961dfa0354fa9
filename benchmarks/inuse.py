"""How long does the "is anything running from this environment?" check take?

Builds one real venv, starts N idle processes unrelated to it (plus this machine's own), and prints
the median wall time of `processes_using(venv)` (every process looked at: exe, argv, PATH lookup,
VIRTUAL_ENV, and on Linux /proc/PID/maps and open files), per call and per process. `fix` runs it
twice (before recovery, before installing). Goal: well under a second on a desktop with a few
hundred processes. Run: `.venv/bin/python benchmarks/inuse.py [--processes 200] [--repeat 7]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.envs import make_venv
from torchdoctor.service.install.envguard import processes_using


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=200, help="idle processes to add (default 200)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="td-inuse-") as tmp:
        venv = make_venv(Path(tmp) / "venv")
        idle = [subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL) for _ in range(args.processes)]
        try:
            total = len(psutil.pids())
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                found = processes_using(venv)
                times.append(time.perf_counter() - began)
            if found:
                raise SystemExit(f"unexpected: {found} use a fresh venv")
        finally:
            for child in idle:
                child.kill()
                child.wait()
    median = statistics.median(times)
    print(f"processes on the machine: {total}")
    per_process = median / total * 1e6
    print(f"processes_using: median {median * 1000:.1f} ms per call, {per_process:.0f} us per process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What does the frozen app cost? Its size on disk, the installer's size, and `check --json` start-up.

Builds (or reuses, from .cache/frozen/) the one-folder app of packaging/windows/torchdoctor.spec and
compiles the NSIS installer around it with makensis (skipped with a line where makensis is absent;
on Linux this is the Linux app, packed by the Windows installer script: the Windows app's size is
the windows CI job's artefact). Then times `torchdoctor check --json --hardware F --env E
--no-discover` from the frozen program and from the venv's `torchdoctor` script, alternating, on a
real venv holding stand-in torch wheels, and prints the medians (and min/max). A benchmark prints;
it never fails on a figure.

Run: `.venv/bin/python benchmarks/frozen.py [--runs 15] [--no-installer]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "packaging"))
sys.path.insert(0, str(REPO))

import freeze  # noqa: E402
import installer  # noqa: E402

from tests.support.envs import install_standins, make_venv  # noqa: E402
from tests.support.scenarios import NEW_DRIVER, family  # noqa: E402


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    json.loads(done.stdout)  # a real answer, not an early error
    return elapsed


def describe(name: str, samples: list[float]) -> str:
    return (
        f"{name:<8} median {statistics.median(samples) * 1000:7.0f} ms"
        f"  (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f}, n={len(samples)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per program (default 15)")
    parser.add_argument("--no-installer", action="store_true", help="skip compiling the installer")
    args = parser.parse_args()

    started = time.perf_counter()
    app = freeze.cached_app()
    print(f"frozen app: {app} (ready in {time.perf_counter() - started:.0f} s)")
    uv_mb = (app / freeze.program_name("uv")).stat().st_size / 1e6
    print(f"  size on disk: {freeze.tree_size(app) / 1e6:.1f} MB, of which uv {uv_mb:.1f} MB")

    with tempfile.TemporaryDirectory(prefix="td-bench-frozen-") as tmp:
        base = Path(tmp)
        if not args.no_installer:
            try:
                setup = installer.compile_installer(
                    app, base / "torchdoctor-bench-setup.exe", freeze.project_version()
                )
                print(f"  installer (NSIS, lzma solid): {setup.stat().st_size / 1e6:.1f} MB")
            except installer.InstallerError as exc:
                print(f"  installer: not compiled ({str(exc).splitlines()[0]})")
        env = make_venv(base / "venv")
        install_standins(env, family("cpu"))
        hw = base / "hw.json"
        hw.write_text(json.dumps(NEW_DRIVER), encoding="utf-8")
        tail = ["check", "--json", "--hardware", str(hw), "--env", str(env.root), "--no-discover"]
        programs = {
            "frozen": [str(app / freeze.program_name(freeze.APP_NAME)), *tail],
            "venv": [str(Path(sys.executable).with_name("torchdoctor")), *tail],
        }
        for argv in programs.values():
            timed(argv)  # warm the page cache once each
        samples: dict[str, list[float]] = {name: [] for name in programs}
        for _ in range(args.runs):
            for name, argv in programs.items():
                samples[name].append(timed(argv))
    print("`torchdoctor check --json` start-up and run, one environment:")
    for name, values in samples.items():
        print("  " + describe(name, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())

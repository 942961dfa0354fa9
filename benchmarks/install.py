"""`torchdoctor fix` with uv vs with pip, and torchdoctor's own overhead, on a real local index.

A loopback index serves the real CPU torch 2.13.0 wheel (from this machine's wheel folder) and its
dependencies (downloaded once from PyPI into `.cache/bench-index`). Each run starts from a fresh
venv holding a stand-in `torch 2.13.0+cu130`, on a machine without a GPU, so the plan is the CPU
build: a real 180 MB wheel is downloaded, hash-checked, installed, and verified by importing it.

Printed per installer: the median wall time of `torchdoctor fix --yes --no-bench` and of the bare
installer doing the same replacement (`uv pip install` / `pip install` from the same index), all
with cold caches, and the difference: torchdoctor's overhead (planning, its own download and hash
check, the snapshot, the verification import).

Run: `.venv/bin/python benchmarks/install.py [--repeat 3]` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.envs import install_standins, make_venv
from tests.support.index_server import IndexServer
from tests.support.standin import StandIn
from torchdoctor.service.install.installers import find_uv, installer_environ

TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
DEPS = ["filelock", "typing-extensions", "setuptools", "sympy", "networkx", "jinja2", "fsspec"]
REPO = Path(__file__).resolve().parents[1]


def find_torch_wheel() -> Path:
    for folder in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split():
        candidate = Path(folder) / TORCH_WHEEL
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{TORCH_WHEEL} not found in PIP_FIND_LINKS; this benchmark needs that wheel")


def build_index() -> Path:
    root = REPO / ".cache" / "bench-index"
    cpu = root / "cpu"
    stamp = root / ".complete"
    if stamp.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (cpu / "torch").mkdir(parents=True)
    shutil.copy2(find_torch_wheel(), cpu / "torch" / TORCH_WHEEL)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "--dest", tmp, *DEPS],
            check=True,
            env=installer_environ(),
            capture_output=True,
        )
        for wheel in Path(tmp).glob("*.whl"):
            project = wheel.name.split("-")[0].lower().replace("_", "-")
            (cpu / project).mkdir(exist_ok=True)
            shutil.move(str(wheel), cpu / project / wheel.name)
    stamp.write_text("ok")
    return root


def fresh_env(base: Path) -> Path:
    env = make_venv(base / "venv")
    install_standins(env, [StandIn("torch", "2.13.0+cu130", cuda="13.0")])
    return env.root


def run_timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=900)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}... failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds


def one_round(installer: str, index: IndexServer, hw: Path) -> tuple[float, float]:
    """(torchdoctor fix, bare installer) wall seconds, each from a fresh venv and cold caches."""
    times = []
    for mode in ("fix", "bare"):
        with tempfile.TemporaryDirectory(prefix="td-install-") as tmp:
            base = Path(tmp)
            root = fresh_env(base)
            env = installer_environ()
            env.update(
                XDG_CACHE_HOME=str(base / "xdg-cache"),  # pip's cache
                UV_CACHE_DIR=str(base / "uv-cache"),
                TORCHDOCTOR_CACHE_DIR=str(base / "td-cache"),
                TORCHDOCTOR_STATE_DIR=str(base / "td-state"),
                TORCHDOCTOR_LOG_DIR=str(base / "td-log"),
                PYTHONPATH="",
            )
            python = str(root / "bin" / "python")
            if mode == "fix":
                argv = [
                    sys.executable,
                    "-m",
                    "torchdoctor.agent",
                    "fix",
                    "--env",
                    str(root),
                    "--yes",
                    "--no-bench",
                ]
                argv += ["--installer", installer, "--hardware", str(hw), "--index-base", index.url]
            elif installer == "uv":
                argv = [find_uv() or "uv", "pip", "install", "--python", python, "torch==2.13.0+cpu"]
                argv += ["--default-index", index.index_url("cpu")]
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "pip",
                    "--python",
                    python,
                    "install",
                    "--no-input",
                    "torch==2.13.0+cpu",
                ]
                argv += ["--index-url", index.index_url("cpu")]
            times.append(run_timed(argv, env))
    return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = build_index()
    with tempfile.TemporaryDirectory() as tmp, IndexServer(root) as index:
        hw = Path(tmp) / "hw.json"
        hw.write_text(json.dumps({"gpus": []}))
        results: dict[str, tuple[float, float]] = {}
        for installer in ("uv", "pip"):
            rounds = [one_round(installer, index, hw) for _ in range(args.repeat)]
            results[installer] = (
                statistics.median(r[0] for r in rounds),
                statistics.median(r[1] for r in rounds),
            )
            fixes, bares = [round(r[0], 1) for r in rounds], [round(r[1], 1) for r in rounds]
            print(f"{installer}: fix {fixes} s, bare {bares} s", file=sys.stderr)

    print(f"torch 2.13.0+cpu (real wheel) from a loopback index, cold caches, median of {args.repeat}")
    print(f"{'installer':>9}  {'fix':>8}  {'bare':>8}  {'overhead':>8}")
    for installer, (fix, bare) in results.items():
        print(f"{installer:>9}  {fix:>7.1f}s  {bare:>7.1f}s  {fix - bare:>7.1f}s")
    uv_fix, pip_fix = results["uv"][0], results["pip"][0]
    print(f"fix with pip / fix with uv: {pip_fix / uv_fix:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How fast is `torchdoctor check` compared with what a user runs today for one environment?

Builds N real venvs (uv) holding stand-in torch builds, then prints the median wall time of
`torchdoctor check --json --no-discover --hardware FILE --env ...` for N = 1, 20 and 100, and
beside it one `python -m torch.utils.collect_env` on the real CPU torch 2.13.0.

Targets (issue #2): 20 environments in under a quarter of one collect_env; under 5 ms per extra
environment. Run: `.venv/bin/python benchmarks/scan.py [--repeat 7]`.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.envs import install_standins, make_venv
from tests.support.realtorch import ensure_real_torch
from tests.support.standin import StandIn

BUILDS = [
    [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.22.1+cu128")],
    [StandIn("torch", "2.5.1+cpu")],
    [StandIn("torch", "2.4.0+cu121", cuda="12.1"), StandIn("torchvision", "0.20.1+cu124")],
    [StandIn("torch", "2.9.1+cu130", cuda="13.0"), StandIn("torchaudio", "2.9.1+cu130")],
    [],
]
HARDWARE = {
    "driver_version": "572.16",
    "cuda_driver_version": "12.8",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "memory_mib": 24564}],
}


def timed(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False, timeout=600)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    torch_python = ensure_real_torch()
    with tempfile.TemporaryDirectory(prefix="td-scan-") as tmp:
        base = Path(tmp)
        hw = base / "hw.json"
        hw.write_text(json.dumps(HARDWARE))
        print("building 100 venvs with stand-in torch builds...", file=sys.stderr)
        roots = []
        for i in range(100):
            env = make_venv(base / f"env{i:03d}")
            if BUILDS[i % len(BUILDS)]:
                install_standins(env, BUILDS[i % len(BUILDS)])
            roots.append(env.root)

        cli = [sys.executable, "-m", "torchdoctor.agent", "check", "--json", "--no-discover"]
        cli += ["--hardware", str(hw)]
        results = {}
        for n in (1, 20, 100):
            argv = cli + [a for r in roots[:n] for a in ("--env", str(r))]
            check = subprocess.run(argv, capture_output=True, text=True, check=False)
            if len(json.loads(check.stdout)["environments"]) != n:
                raise SystemExit(f"check did not report {n} environments: {check.stderr}")
            results[n] = timed(argv, args.repeat)
        start_only = timed([sys.executable, "-m", "torchdoctor.agent", "--version"], args.repeat)
        collect = timed([str(torch_python), "-m", "torch.utils.collect_env"], max(3, args.repeat // 2))

    print(f"python {sys.version.split()[0]}, median of {args.repeat} runs each")
    print(f"{'environments':>12}  {'check --json':>12}  {'vs collect_env':>14}")
    for n, seconds in results.items():
        print(f"{n:>12}  {seconds * 1000:>9.0f} ms  {seconds / collect:>13.1%}")
    print(f"{'(startup)':>12}  {start_only * 1000:>9.0f} ms   torchdoctor --version")
    print(f"one collect_env (real torch 2.13.0+cpu): {collect * 1000:.0f} ms")
    per_env = (results[100] - results[1]) / 99 * 1000
    print(f"per extra environment: {per_env:.2f} ms (target < 5 ms)")
    print(f"20 environments / one collect_env: {results[20] / collect:.2f} (target < 0.25)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

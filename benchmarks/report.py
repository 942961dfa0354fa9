"""How fast is `torchdoctor report`, and how big is its page?

1. One machine: 20 real venvs (uv, stand-in torch builds), a year of daily benchmarks of every
   one of them written through service/bench/history.append (which keeps the newest 500 lines, so
   that is what the page reads), 50 fix logs and a tray log with driver changes. Timed: the whole
   CLI, `torchdoctor report --hardware FILE --no-discover --env ... x20 --out FILE` (a fresh
   check of the 20 environments included). Also, in-process, the render alone over the full year
   of all 20 (7,300 runs: more than the history file ever holds).
2. A fleet: 1,000 `check --json` documents of 5 environments each in one folder. Timed: the whole
   CLI, `torchdoctor report --from FOLDER --out FILE`.

Targets (issue 14): under 1 s and under 3 s; pages under 1 MB and 5 MB. Prints medians.
Run: `.venv/bin/python benchmarks/report.py [--repeat 5]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import report_docs as rd
from tests.support.envs import install_standins, make_venv
from tests.support.standin import StandIn
from torchdoctor.agent.report.documents import document_from_json
from torchdoctor.agent.report.model import BenchPoint, LocalHistory
from torchdoctor.agent.report.render import render_machine
from torchdoctor.service.bench.history import HISTORY_NAME, MAX_RECORDS

HARDWARE = {
    "driver_version": "570.86.15",
    "cuda_driver_version": "12.8",
    "gpus": [{"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "memory_mib": 81559}],
}
BUILDS = [
    [StandIn("torch", "2.7.1+cu128", cuda="12.8"), StandIn("torchvision", "0.22.1+cu128")],
    [StandIn("torch", "2.5.1+cpu")],
    [StandIn("torch", "2.4.0+cu121", cuda="12.1"), StandIn("torchvision", "0.20.1+cu124")],
    [],
]
TARGETS = {"machine": (1.0, 1_000_000), "fleet": (3.0, 5_000_000)}


def timed(argv: list[str], repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of the command. CPU time is the steadier figure
    on a shared machine, where wall time includes waiting for a core."""
    times, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv[:4])} ... failed ({result.returncode}): {result.stderr.strip()}"
            )
    return statistics.median(times), statistics.median(cpu)


def _bench_line(env: Path, at: datetime, series_point: BenchPoint) -> str:
    figures = dict(series_point.figures)
    return json.dumps(
        {
            "schema_version": 1,
            "env": str(env),
            "python": str(env / "bin" / "python"),
            "at": at.isoformat(),
            "result": {
                "schema_version": 1,
                "device": "cuda:0",
                "device_name": series_point.device_name,
                "torch_version": series_point.torch_version,
                "passed": series_point.passed,
                "checks": [{"name": "matmul", "passed": series_point.passed, "detail": "ok"}],
                "figures": figures,
                "seconds": 4.2,
                "reason": series_point.reason,
                "peak": {"gpu": "H100 SXM5 80GB", "source": "NV-H100-DS", "grade": "A",
                         "peaks": {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5}},
            },
        }
    )  # fmt: skip


def machine(base: Path, repeat: int) -> tuple[float, float, int]:
    state, logs = base / "state", base / "log"
    state.mkdir()
    logs.mkdir()
    envs: list[Path] = []
    for i in range(20):
        made = make_venv(base / "envs" / f"project{i:02}" / ".venv")
        if BUILDS[i % len(BUILDS)]:  # the last kind has no torch at all
            install_standins(made, BUILDS[i % len(BUILDS)])
        envs.append(made.root)
    start = datetime(2025, 12, 1, 3, 0, tzinfo=UTC)
    lines = []
    for root in envs:
        for point in rd.bench_history(str(root), days=365, start=start, fail_every=45).points:
            lines.append((point.at, _bench_line(root, point.at, point)))
    lines.sort()
    # What history.append leaves after a year of this: the newest MAX_RECORDS lines.
    kept = "".join(line + "\n" for _, line in lines[-MAX_RECORDS:])
    (state / HISTORY_NAME).write_text(kept, encoding="utf-8")
    for i in range(50):
        stamp = (start + timedelta(days=7 * i)).strftime("%Y%m%dT%H%M%SZ")
        (logs / f"fix-{stamp}-.venv.log").write_text(
            f"torchdoctor fix {envs[i % 20]}\nplan: torch==2.7.1+cu128 torchvision==0.22.1+cu128 from "
            "https://download.pytorch.org/whl/cu128\nverification: ok=True facts={}\ncheck: ok []\n",
            encoding="utf-8",
        )
    (logs / "tray.log").write_text(
        "".join(
            f"2026-0{m}-01 09:00:00,000 INFO torchdoctor.tray: "
            f"event: driver-changed driver: 5{m}0.1 -> 5{m + 1}0.1\n"
            for m in range(1, 9)
        ),
        encoding="utf-8",
    )
    hw = base / "hw.json"
    hw.write_text(json.dumps(HARDWARE), encoding="utf-8")
    out = base / "machine.html"
    argv = [sys.executable, "-m", "torchdoctor.agent", "report", "--hardware", str(hw), "--no-discover",
            "--out", str(out)] + [a for e in envs for a in ("--env", str(e))]  # fmt: skip
    environ = {
        **os.environ,
        "TORCHDOCTOR_STATE_DIR": str(state),
        "TORCHDOCTOR_LOG_DIR": str(logs),
        "TORCHDOCTOR_CONFIG_DIR": str(base / "config"),
        "TORCHDOCTOR_CACHE_DIR": str(base / "cache"),
    }
    seconds, cpu = timed(argv, repeat, environ)
    return seconds, cpu, out.stat().st_size


def machine_full_year_render(repeat: int) -> tuple[float, float, int]:
    """The render alone over 20 x 365 runs: the worst case, beyond what the history file keeps."""
    envs = [rd.environment(f"/home/ana/project{i:02}/.venv", "ok") for i in range(20)]
    doc = document_from_json(rd.document(0, environments=envs), name="ana", source="")
    local = LocalHistory(bench=tuple(rd.bench_history(e["path"], days=365, fail_every=45) for e in envs))
    times, cpu, size = [], [], 0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        html = render_machine(doc, local, generated_at=datetime.now(UTC), version="bench")
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        size = len(html.encode("utf-8"))
    return statistics.median(times), statistics.median(cpu), size


def fleet(base: Path, repeat: int) -> tuple[float, float, int]:
    folder = base / "fleet"
    folder.mkdir()
    for i, doc in enumerate(rd.fleet(1000, envs_per_machine=5)):
        (folder / f"gpu-node-{i:04}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    out = base / "fleet.html"
    argv = [sys.executable, "-m", "torchdoctor.agent", "report", "--from", str(folder), "--out", str(out)]
    seconds, cpu = timed(argv, repeat, dict(os.environ))
    return seconds, cpu, out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="td-report-") as tmp:
        base = Path(tmp)
        rows = [
            (
                "machine: CLI, 20 envs, history file (500 newest of 20 x 365 daily runs)",
                "machine",
                *machine(base, args.repeat),
            ),
            (
                "machine: render only, 20 envs x 365 daily runs (7,300 points)",
                "machine",
                *machine_full_year_render(args.repeat),
            ),
            ("fleet: CLI, 1,000 documents x 5 envs", "fleet", *fleet(base, args.repeat)),
        ]
    print(f"median of {args.repeat} runs; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for label, kind, seconds, cpu, size in rows:
        limit_s, limit_b = TARGETS[kind]
        verdict = "ok" if seconds < limit_s and size < limit_b else "OVER TARGET"
        target = f"target < {limit_s:g} s, < {limit_b / 1e6:g} MB: {verdict}"
        print(f"{label:75} {seconds:6.3f} s wall {cpu:6.3f} s CPU  {size / 1e6:6.3f} MB  ({target})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

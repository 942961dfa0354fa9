"""The whole path with the real CPU torch: `bench` measures and records, `report` reads the record
and charts it. Nothing stands in: the benchmark script runs real torch in its own venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import realtorch

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def torchdoctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchdoctor.agent", *args],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


def test_a_real_cpu_benchmark_is_charted_in_the_report(tmp_path: Path, td_dirs: dict[str, Path]) -> None:
    root = realtorch.ensure_real_torch().parent.parent
    bench = torchdoctor("bench", "--env", str(root), "--device", "cpu", "--json")
    assert bench.returncode == 0, bench.stderr
    measured = json.loads(bench.stdout)["figures"]["matmul_fp32_gflops"]
    assert (td_dirs["state"] / "bench-history.jsonl").is_file()
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"gpus": []}), encoding="utf-8")
    out = tmp_path / "me.html"
    report = torchdoctor(
        "report", "--hardware", str(hw), "--no-discover", "--env", str(root), "--out", str(out)
    )
    assert report.returncode == 0, report.stderr
    html = out.read_text(encoding="utf-8")
    section = html.split('id="benchmarks"', 1)[1].split('id="fixes"', 1)[0]
    assert "1 run, 0 failed" in " ".join(section.split())
    assert "<svg" in section
    assert "CPU FP32 GFLOP/s" in section
    assert f"{measured:.4g}" in section  # the figure bench printed is the one the table shows

"""`check --json` documents and benchmark histories for the report's tests and benchmark.

Shaped exactly as docs/contract.md says (rules/check.py's check_to_json writes the same keys);
the variety is what a real fleet shows: several GPU models and drivers, each status, each finding.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from torchdoctor.agent.report.model import BenchPoint, BenchSeries

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ATTR = '"><img src=x onerror=alert(2)>'

GPUS = [
    ("NVIDIA H100 80GB HBM3", "9.0", 81559, "570.86.15", "12.8", "linux"),
    ("NVIDIA GeForce RTX 5090", "12.0", 32607, "572.16", "12.8", "windows"),
    ("NVIDIA GeForce RTX 4090", "8.9", 24564, "560.94", "12.6", "windows"),
    ("NVIDIA A100-SXM4-80GB", "8.0", 81920, "535.183.01", "12.2", "linux"),
]

FINDINGS = [
    (
        "gpu-arch-unsupported",
        "error",
        "torch 2.5.1+cu124 has no kernels for sm_120 (NVIDIA GeForce RTX 5090).",
    ),
    (
        "driver-too-old",
        "error",
        "torch 2.7.1+cu128 needs driver 570.26 or newer; this machine has 535.183.01.",
    ),
    ("cpu-build-with-gpu", "error", "This is a CPU-only torch on a machine with an NVIDIA GPU."),
    ("companion-mismatch", "error", "torchvision 0.19.1 is not the release paired with torch 2.5.1."),
    ("driver-minor-compat", "warn", "torch 2.7.1+cu128 runs through CUDA minor-version compatibility."),
    ("newer-variant-available", "info", "Works; the driver also supports cu128, which fits the GPU."),
]


def environment(
    path: str, status: str, *, torch: str | None = "2.7.1+cu128", codes: tuple[int, ...] = ()
) -> dict[str, Any]:
    findings = []
    for i in codes:
        code, severity, message = FINDINGS[i]
        findings.append(
            {
                "code": code,
                "severity": severity,
                "message": message,
                "fix": f"run `torchdoctor fix --env {path}`, or by hand: {path}/bin/python -m pip install "
                "torch==2.7.1+cu128 --index-url https://download.pytorch.org/whl/cu128",
            }
        )
    variant = torch.split("+")[1] if torch and "+" in torch else None
    return {
        "path": path,
        "python": f"{path}/bin/python",
        "python_version": "3.12.4",
        "kind": "venv",
        "torch": None
        if torch is None
        else {
            "version": torch,
            "variant": variant,
            "cuda": "12.8" if variant == "cu128" else None,
            "torchvision": "0.22.1+cu128",
            "torchaudio": None,
            "installer": "pip",
        },
        "status": status,
        "findings": findings,
    }


def document(
    gpu: int = 0, *, environments: list[dict[str, Any]] | None = None, status: str | None = None
) -> dict[str, Any]:
    name, cc, memory, driver, cuda, platform = GPUS[gpu]
    envs = environments if environments is not None else [environment("/home/ana/proj/.venv", "ok")]
    worst = max(
        (e["status"] for e in envs),
        key=lambda s: {"ok": 0, "no-torch": 0, "warn": 1, "broken": 2}[s],
        default="ok",
    )
    return {
        "schema_version": 1,
        "hardware": {
            "source": "nvml",
            "platform": platform,
            "driver_version": driver,
            "cuda_driver_version": cuda,
            "gpus": [{"index": 0, "name": name, "compute_capability": cc, "memory_mib": memory}],
            "state": "ok",
            "notes": [],
        },
        "environments": envs,
        "status": status or ("ok" if worst == "no-torch" else worst),
        "notes": [],
    }


def fleet(n: int, *, seed: int = 7, envs_per_machine: int = 3) -> list[dict[str, Any]]:
    """`n` machines: most ok, some warn, some broken, on four GPU models and drivers."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        envs = []
        for j in range(envs_per_machine):
            roll = rng.random()
            path = f"/home/user{i}/project{j}/.venv"
            if roll < 0.12:
                envs.append(
                    environment(path, "broken", torch="2.5.1+cu124", codes=(rng.choice((0, 1, 2, 3)),))
                )
            elif roll < 0.22:
                envs.append(environment(path, "warn", codes=(4,)))
            elif roll < 0.3:
                envs.append(environment(path, "no-torch", torch=None))
            else:
                envs.append(environment(path, "ok", codes=(5,) if roll > 0.9 else ()))
        docs.append(document(rng.randrange(len(GPUS)), environments=envs))
    return docs


def bench_history(env: str, *, days: int, start: datetime | None = None, fail_every: int = 0) -> BenchSeries:
    """A daily benchmark of `env` for `days` days: H100-like figures with noise, a failure every
    `fail_every` days (0: none)."""
    rng = random.Random(days)
    t0 = start or datetime(2025, 12, 1, 3, 0, tzinfo=UTC)
    peaks = {
        "matmul_fp32_tflops": 67.0,
        "matmul_tf32_tflops": 494.5,
        "matmul_fp16_tflops": 989.5,
        "matmul_bf16_tflops": 989.5,
    }
    points = []
    for d in range(days):
        failed = bool(fail_every) and d % fail_every == fail_every - 1
        figures = (
            {}
            if failed
            else {
                "matmul_fp32_tflops": 48 + rng.random() * 4,
                "matmul_tf32_tflops": 350 + rng.random() * 30,
                "matmul_fp16_tflops": 610 + rng.random() * 60,
                "matmul_bf16_tflops": 620 + rng.random() * 50,
                "device_memory_gbps": 2900 + rng.random() * 200,
            }
        )
        points.append(
            BenchPoint(
                at=t0 + timedelta(days=d),
                passed=not failed,
                device="cuda:0",
                device_name="NVIDIA H100 80GB HBM3",
                torch_version="2.7.1+cu128",
                figures=figures,
                peaks=dict(MappingProxyType(peaks)),
                reason="cuda-unavailable: CUDA driver initialization failed" if failed else None,
            )
        )
    return BenchSeries(env, tuple(points))

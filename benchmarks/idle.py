"""What does the tray cost while it sits idle? Resident memory and CPU of the real `torchdoctor tray`.

The issue's targets: under 60 MB resident on pystray's win32 and xorg backends (no GTK, heavy
imports lazy), under 1 % of one core on average, and no growth from the first to the last minute;
the appindicator (GTK) figure is reported beside them, without a target (GTK alone costs ~100 MB).

What runs: 20 real venvs with stand-in torch wheels (16 fit this machine, 4 do not and get a repair
plan from a local index), built once into `.cache/bench-idle/`; a hardware file with driver
520.61.05 (CUDA 11.8); the real tray, `python -m torchdoctor.agent tray --env P x20 --no-discover
--interval 60 --first-check-after 0`, in a private desktop (Xvfb + openbox + tint2 + dunst,
tests/support/desktop.py), once per backend. Every 5 s the tray process is sampled (psutil: RSS,
USS, user+system CPU, threads); the tray's log says when each check cycle began and ended.

Printed: the import cost first (the RSS of a bare python and of each step of the tray's imports;
the 10 slowest imports of an xorg tray start from `-X importtime`; and, replaying those imports one
at a time in a fresh interpreter, the RSS each module and what it pulled in added), then per
backend: RSS after the first check, median, max, first minute vs last minute, average CPU (whole
run, and after the first check), CPU per check cycle, checks, threads, each against its target
in words. A benchmark prints; it never fails on a figure.

Run: `.venv/bin/python benchmarks/idle.py [--minutes 10] [--backend xorg|appindicator|both|none]`
(default 10 minutes per backend, both: about 21 minutes; `--minutes 2` for a quick look; `none`
for the import cost alone; `--keep` keeps the desktops' and the tray's logs).
Linux with the desktop packages only (`scripts/desktop-deps`); appindicator needs PyGObject (the
optional `linux-tray` extra) and is skipped without it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import Final

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.desktop import Desktop, DesktopError, Spawned
from tests.support.envs import install_standins, make_venv
from tests.support.index_server import IndexServer, publish, torch_family
from tests.support.standin import StandIn

REPO: Final = Path(__file__).resolve().parents[1]
CACHE: Final = REPO / ".cache" / "bench-idle"
MB: Final = 1024 * 1024
INTERVAL_S: Final = 60
SAMPLE_S: Final = 5.0
FIRST_CHECK_TIMEOUT_S: Final = 180.0
TARGET_RSS_MB: Final = 60.0
TARGET_CPU_PCT: Final = 1.0
# "No growth", give or take what allocator arenas and page rounding move by themselves.
GROWTH_TOLERANCE_MB: Final = 1.0
BACKENDS: Final = ("xorg", "appindicator")

GPU: Final = [{"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}]
HARDWARE: Final = {"driver_version": "520.61.05", "cuda_driver_version": "11.8", "gpus": GPU}
# torch -> torchvision of the same release; every one of them has a cu118 build, which fits the driver.
FITTING: Final = [("2.7.1", "0.22.1"), ("2.6.0", "0.21.0"), ("2.5.1", "0.20.1"), ("2.4.1", "0.19.1"),
                  ("2.3.1", "0.18.1")]  # fmt: skip
# Builds that do not fit driver 520 (CUDA 12.x needs a newer driver; a CPU build on a GPU machine):
# every fifth environment, each planned against the local index (the plan is torch 2.7.1+cu118).
BROKEN: Final = ("cu128", "cu126", "cu128", "cpu")
INDEX_VARIANTS: Final = ("cu118", "cu126", "cu128", "cpu")

LOG_LINE: Final = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ torchdoctor\.tray: "
    r"(?:check \((?P<reason>[\w-]+)\)|status: (?P<status>[\w-]+))"
)
IMPORT_TIME: Final = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")

# Imports the modules named on the command line, then prints its own VmRSS in kB.
RSS_PROBE: Final = """
import importlib, sys
for _name in sys.argv[1:]:
    importlib.import_module(_name)
with open("/proc/self/status") as _f:
    print(next(int(_l.split()[1]) for _l in _f if _l.startswith("VmRSS:")))
"""

# Imports the modules read from stdin (a JSON list, in the order an importtime run finished them)
# one at a time, and prints what VmRSS each one added, in kB.
REPLAY_PROBE: Final = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
start = before = rss()
rows = []
for name in json.loads(sys.stdin.read()):
    if name in sys.modules:
        continue
    try:
        importlib.import_module(name)
    except BaseException as exc:
        rows.append([name, 0, type(exc).__name__])
        continue
    now = rss()
    rows.append([name, now - before, ""])
    before = now
print(json.dumps({"start": start, "end": rss(), "rows": rows}))
"""


# --- the environments, the index and the hardware file (cached) ------------------------------


@dataclass(frozen=True, slots=True)
class Fixture:
    envs: tuple[Path, ...]
    hardware: Path
    index: Path
    fitting: int
    broken: int


def env_mix() -> list[tuple[str, list[StandIn]]]:
    """20 environments: every fifth does not fit; the others are cu118 builds of five releases,
    with none, one or both companions."""
    mix: list[tuple[str, list[StandIn]]] = []
    fit = broken = 0
    for i in range(20):
        if i % 5 == 4:
            variant, torch, vision, companions = BROKEN[broken], "2.7.1", "0.22.1", 1
            broken += 1
        else:
            (torch, vision), variant, companions = FITTING[fit % len(FITTING)], "cu118", fit % 3
            fit += 1
        cuda = None if variant == "cpu" else f"{variant[2:-1]}.{variant[-1]}"
        specs = [StandIn("torch", f"{torch}+{variant}", cuda=cuda)]
        if companions >= 1:
            specs.append(StandIn("torchvision", f"{vision}+{variant}"))
        if companions >= 2:
            specs.append(StandIn("torchaudio", f"{torch}+{variant}"))
        mix.append((f"env{i:02d}-{variant}", specs))
    return mix


def build_fixture() -> Fixture:
    """The venvs, the index folder and the hardware file under .cache/bench-idle, built once: a
    stamp holds a digest of what they are made of, and a change rebuilds them."""
    mix = env_mix()
    recipe = json.dumps([[n, [repr(s) for s in specs]] for n, specs in mix] + [HARDWARE, INDEX_VARIANTS])
    key = hashlib.sha256(f"{recipe}\n{sys.executable}\n{sys.version}".encode()).hexdigest()
    stamp = CACHE / ".complete"
    envs = tuple(CACHE / "envs" / name for name, _ in mix)
    fixture = Fixture(envs, CACHE / "hw.json", CACHE / "index", len(mix) - len(BROKEN), len(BROKEN))
    intact = all((e / "bin" / "python").exists() for e in envs)
    if stamp.exists() and stamp.read_text() == key and intact:
        return fixture
    print(f"building {len(mix)} venvs with stand-in torch builds in {CACHE} (once)...", file=sys.stderr)
    shutil.rmtree(CACHE, ignore_errors=True)
    CACHE.mkdir(parents=True)
    for (_, specs), root in zip(mix, envs, strict=True):
        install_standins(make_venv(root), specs)
    for variant in INDEX_VARIANTS:
        publish(fixture.index, torch_family(variant), variant)
    fixture.hardware.write_text(json.dumps(HARDWARE))
    stamp.write_text(key)
    return fixture


# --- the tray ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    reason: str
    start: float  # epoch seconds, from the log
    end: float | None  # the first status other than "checking" after it


def read_checks(log: Path) -> list[Check]:
    """The check cycles in the tray's log: each `check (...)` line begins one."""
    checks: list[Check] = []
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return checks
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        # logging's asctime is local time, and so is a naive datetime's timestamp().
        at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if match["reason"]:
            checks.append(Check(match["reason"], at, None))
        elif match["status"] != "checking" and checks and checks[-1].end is None:
            checks[-1] = Check(checks[-1].reason, checks[-1].start, at)
    return checks


def start_tray(
    desktop: Desktop, *, name: str, backend: str, fixture: Fixture, index_url: str, importtime: bool = False
) -> tuple[Spawned, Path]:
    """The real tray in `desktop`, with its own config/state/cache/log folders; it and its log file."""
    folder = Path(desktop.base).parent / name
    env = {"PYSTRAY_BACKEND": backend}
    env |= {f"TORCHDOCTOR_{k}_DIR": str(folder / k.lower()) for k in ("CONFIG", "STATE", "CACHE", "LOG")}
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "torchdoctor.agent", "tray"]
    argv += ["--hardware", str(fixture.hardware), "--no-discover", "--index-base", index_url]
    argv += ["--interval", str(INTERVAL_S), "--first-check-after", "0"]
    argv += [a for root in fixture.envs for a in ("--env", str(root))]
    return desktop.spawn(name, argv, env=env), folder / "log" / "tray.log"


def stop(tray: Spawned) -> None:
    """SIGTERM, then SIGKILL (the desktop's teardown stops its process group anyway)."""
    if tray.process.poll() is None:
        tray.process.terminate()
        try:
            tray.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tray.process.kill()
            tray.process.wait(timeout=10)


# --- sampling ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the tray was started (monotonic)
    wall: float  # epoch seconds, to compare with the log
    rss: int
    uss: int | None
    cpu: float  # the tray's own user + system seconds
    children_cpu: float  # of the children it waited for (env interpreters asked during checks)
    threads: int


def take_sample(proc: psutil.Process, t0: float) -> Sample:
    with proc.oneshot():
        rss = proc.memory_info().rss
        times = proc.cpu_times()
        threads = proc.num_threads()
    try:
        uss: int | None = proc.memory_full_info().uss
    except (psutil.AccessDenied, AttributeError):
        uss = None
    return Sample(
        time.monotonic() - t0,
        time.time(),
        rss,
        uss,
        times.user + times.system,
        times.children_user + times.children_system,
        threads,
    )


@dataclass
class Run:
    backend: str
    minutes: float
    samples: list[Sample] = field(default_factory=list)  # every SAMPLE_S from the start
    first_start: Sample | None = None  # as the first "check (start)" line appeared
    first_end: Sample | None = None  # as the first check had ended
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    tracebacks: int = 0


def measure(desktop: Desktop, backend: str, minutes: float, fixture: Fixture, index_url: str) -> Run:
    """Start the tray, sample it for `minutes`, stop it."""
    run = Run(backend, minutes)
    tray, log = start_tray(desktop, name="tray", backend=backend, fixture=fixture, index_url=index_url)
    try:
        sample_tray(run, tray, log)
    finally:
        stop(tray)
    run.checks = read_checks(log)
    run.tracebacks = log.read_text(errors="replace").count("Traceback") if log.exists() else 0
    if run.error is not None:
        run.error += f"; its output ends:\n{tray.output()[-3000:]}"
    return run


def sample_tray(run: Run, tray: Spawned, log: Path) -> None:
    """Every SAMPLE_S seconds for `run.minutes`, and once each as the first check begins and ends."""
    t0 = time.monotonic()
    proc = psutil.Process(tray.pid)
    end = run.minutes * 60
    next_tick = SAMPLE_S  # at 0 s the process may not have even exec'd python yet
    try:
        while True:
            if tray.process.poll() is not None:
                run.error = f"the tray exited ({tray.process.returncode}) after {time.monotonic() - t0:.0f} s"
                return
            if run.first_end is None:
                checks = read_checks(log)
                if checks and run.first_start is None:
                    run.first_start = take_sample(proc, t0)
                if checks and checks[0].end is not None:
                    run.first_end = take_sample(proc, t0)
                elif time.monotonic() - t0 > FIRST_CHECK_TIMEOUT_S:
                    run.error = f"no first check had ended after {FIRST_CHECK_TIMEOUT_S:.0f} s"
                    return
            if time.monotonic() - t0 >= next_tick:
                run.samples.append(take_sample(proc, t0))
                next_tick += SAMPLE_S
                if next_tick > end + 1e-6:
                    return
            wait = next_tick - (time.monotonic() - t0)
            # Until the first check has ended, watch the log closely; then sleep to the next tick.
            time.sleep(max(0.0, min(wait, 0.05) if run.first_end is None else wait))
    except psutil.NoSuchProcess:
        run.error = f"the tray exited after {time.monotonic() - t0:.0f} s"
    except KeyboardInterrupt:
        run.interrupted = True


# --- the report --------------------------------------------------------------------------------


def mb(value: float) -> str:
    return f"{value / MB:.1f} MB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "ABOVE"


@dataclass(frozen=True, slots=True)
class Figures:
    rss_start: int
    uss_start: int | None
    rss_median: float
    rss_max: int
    uss_median: float | None
    first_minute: float  # median RSS
    last_minute: float
    by_minute: list[float]  # median RSS of each minute after the first check
    cpu_whole: float  # % of one core, from the start
    cpu_after_first: float  # % of one core, from the end of the first check
    cpu_quiet: float  # % of one core between checks
    cpu_startup: float | None  # seconds until the first check began
    cpu_first_check: float | None  # seconds, approximately
    cpu_per_cycle: float | None  # seconds per later check cycle
    cycles: int  # later check cycles that the figure above averages
    children_after_first: float  # seconds of reaped children after the first check
    checks: int
    check_walls: list[float]
    threads: tuple[int, int]

    @property
    def growth(self) -> float:
        return self.last_minute - self.first_minute


def figures(run: Run) -> Figures | None:
    first, samples = run.first_end, run.samples
    if first is None or len(samples) < 2 or samples[-1].t <= first.t:
        return None
    steady = [first, *(s for s in samples if s.t > first.t)]
    last = samples[-1]
    uss = [s.uss for s in steady if s.uss is not None]
    checks = [c for c in run.checks if c.start <= last.wall]
    later = [c for c in checks[1:] if c.end is not None and c.end <= last.wall]
    # CPU per cycle: what the sample intervals holding a check cost, less what the same time costs
    # between checks (the rate of the quiet intervals).
    quiet_cpu = quiet_s = busy_cpu = busy_s = 0.0
    for a, b in pairwise(steady):
        if any(c.start < b.wall and (c.end or c.start) > a.wall - 0.05 for c in later):
            busy_cpu, busy_s = busy_cpu + b.cpu - a.cpu, busy_s + b.t - a.t
        else:
            quiet_cpu, quiet_s = quiet_cpu + b.cpu - a.cpu, quiet_s + b.t - a.t
    quiet_rate = quiet_cpu / quiet_s if quiet_s else 0.0
    return Figures(
        rss_start=first.rss,
        uss_start=first.uss,
        rss_median=statistics.median(s.rss for s in steady),
        rss_max=max(s.rss for s in steady),
        uss_median=statistics.median(uss) if uss else None,
        first_minute=statistics.median(s.rss for s in steady if s.t < first.t + 60),
        last_minute=statistics.median(s.rss for s in steady if s.t >= last.t - 60),
        by_minute=[
            statistics.median(minute)
            for k in range(int((last.t - first.t) // 60) + 1)
            if (minute := [s.rss for s in steady if 0 <= s.t - first.t - 60 * k < 60])
        ],
        cpu_whole=last.cpu / last.t * 100,
        cpu_after_first=(last.cpu - first.cpu) / (last.t - first.t) * 100,
        cpu_quiet=quiet_rate * 100,
        cpu_startup=run.first_start.cpu if run.first_start else None,
        cpu_first_check=first.cpu - run.first_start.cpu if run.first_start else None,
        cpu_per_cycle=(busy_cpu - quiet_rate * busy_s) / len(later) if later else None,
        cycles=len(later),
        children_after_first=last.children_cpu - first.children_cpu,
        checks=len(checks),
        check_walls=[c.end - c.start for c in checks if c.end is not None],
        threads=(min(s.threads for s in steady), max(s.threads for s in steady)),
    )


def report(run: Run) -> Figures | None:
    print(f"\n== {run.backend}: {run.minutes:g} min, a check every {INTERVAL_S} s, 20 environments")
    if run.interrupted:
        print("   (interrupted: the figures cover what was sampled)")
    if run.error is not None:
        print(f"   FAILED: {run.error}")
    f = figures(run)
    if f is None:
        print("   not enough samples to report")
        return None
    last = run.samples[-1]
    uss_start = f"  (USS {mb(f.uss_start)})" if f.uss_start else ""
    uss_median = f"  (USS median {mb(f.uss_median)})" if f.uss_median else ""
    print(f"   RSS after the first check    {mb(f.rss_start)}{uss_start}")
    print(f"   RSS median / max             {mb(f.rss_median)} / {mb(f.rss_max)}{uss_median}")
    print(
        f"   RSS first minute -> last     {mb(f.first_minute)} -> {mb(f.last_minute)} (medians): "
        f"{f.growth / MB:+.2f} MB ({f.growth / f.first_minute:+.1%})"
    )
    print(f"   RSS by minute (medians, MB)  {' '.join(f'{v / MB:.1f}' for v in f.by_minute)}")
    print(
        f"   CPU, whole run               {f.cpu_whole:.3f} % of one core "
        f"({last.cpu:.2f} s in {last.t:.0f} s)"
    )
    print(f"   CPU, after the first check   {f.cpu_after_first:.3f} % of one core")
    print(f"   CPU, between checks          {f.cpu_quiet:.3f} % of one core")
    if f.cpu_startup is not None and f.cpu_first_check is not None:
        print(f"   CPU to start / first check   {f.cpu_startup:.2f} s / ~{f.cpu_first_check:.2f} s (4 plans)")
    if f.cpu_per_cycle is not None:
        print(f"   CPU per later check cycle    {f.cpu_per_cycle * 1000:.0f} ms (over {f.cycles} cycles)")
    print(
        f"   CPU of reaped children       {last.children_cpu:.2f} s, "
        f"{f.children_after_first:.2f} s of it after the first check (env interpreters)"
    )
    walls = f.check_walls
    timing = f"; wall time first {walls[0]:.2f} s, median {statistics.median(walls):.2f} s" if walls else ""
    print(f"   checks                       {f.checks}{timing}")
    print(f"   threads                      {f.threads[0]}-{f.threads[1]}")
    if run.tracebacks:
        print(f"   tracebacks in the tray log   {run.tracebacks}")

    peak = f.rss_max / MB
    if run.backend == "appindicator":
        print(
            f"   memory: {peak:.1f} MB at most; no target on GTK (the {TARGET_RSS_MB:.0f} MB is win32/xorg)"
        )
    else:
        gap = abs(peak - TARGET_RSS_MB)
        where = "over" if peak >= TARGET_RSS_MB else "under"
        print(
            f"   memory: {verdict(peak < TARGET_RSS_MB)}: {peak:.1f} MB at most, {gap:.1f} MB {where} "
            f"the {TARGET_RSS_MB:.0f} MB target"
        )
    print(
        f"   CPU:    {verdict(f.cpu_after_first < TARGET_CPU_PCT)}: {f.cpu_after_first:.3f} % after the "
        f"first check ({verdict(f.cpu_whole < TARGET_CPU_PCT)} counting start-up: {f.cpu_whole:.3f} %), "
        f"target < {TARGET_CPU_PCT:g} %"
    )
    print(
        f"   growth: {verdict(f.growth <= GROWTH_TOLERANCE_MB * MB)}: {f.growth / MB:+.2f} MB from the first "
        f"minute to the last (tolerance {GROWTH_TOLERANCE_MB:g} MB)"
        # A step once (GTK building what it shows the first time) is not a leak: the later minutes say.
        + (
            f"; from the second minute: {(f.last_minute - f.by_minute[1]) / MB:+.2f} MB"
            if len(f.by_minute) > 2
            else ""
        )
    )
    return f


# --- import cost -------------------------------------------------------------------------------


def probe_rss(desktop: Desktop, backend: str, modules: Sequence[str]) -> int:
    """Median VmRSS (bytes) of 3 fresh interpreters that imported `modules`."""
    env = {**desktop.env, "PYSTRAY_BACKEND": backend}
    values = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, *modules],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        )  # fmt: skip
        values.append(int(done.stdout.split()[-1]) * 1024)
    return int(statistics.median(values))


@dataclass
class Imported:
    """One line of `-X importtime`; `rss` and `cumulative_rss` are filled in by the replay."""

    name: str
    self_us: int
    cumulative_us: int
    depth: int
    rss: int = 0
    cumulative_rss: int = 0
    parent: str = ""  # the module whose import imported it ("" at the top)


def import_times(desktop: Desktop, fixture: Fixture, index_url: str) -> list[Imported]:
    """`-X importtime` of an xorg tray from its start until the first check and its notifications
    are done (the notifier's thread imports desktop-notifier as it sends the first one)."""
    tray, log = start_tray(
        desktop, name="importtime", backend="xorg", fixture=fixture, index_url=index_url, importtime=True
    )
    try:
        deadline = time.monotonic() + FIRST_CHECK_TIMEOUT_S
        while tray.process.poll() is None and time.monotonic() < deadline:
            checks = read_checks(log)
            if checks and checks[0].end is not None:
                time.sleep(3)
                break
            time.sleep(0.1)
    finally:
        stop(tray)
    rows = []
    for line in tray.output().splitlines():
        match = IMPORT_TIME.match(line)
        if match:
            self_us, cumulative, indent, name = match.groups()
            rows.append(Imported(name, int(self_us), int(cumulative), (len(indent) - 1) // 2))
    return rows


def replay_rss(desktop: Desktop, rows: list[Imported]) -> tuple[int, int, list[str]]:
    """Import the modules again in a fresh interpreter in the order they finished (children first),
    one at a time, and charge each what VmRSS grew by; a module's cumulative RSS adds what its
    subtree in the importtime tree added. Returns VmRSS before and after, and what failed to import."""
    names = [r.name for r in rows if "__main__" not in r.name]
    done = subprocess.run(
        [sys.executable, "-c", REPLAY_PROBE],
        input=json.dumps(names), capture_output=True, text=True, timeout=300, check=True,
        env={**desktop.env, "PYSTRAY_BACKEND": "xorg"},
    )  # fmt: skip
    replay = json.loads(done.stdout)
    charged: dict[str, int] = {}
    failed = []
    for name, kb, error in replay["rows"]:
        charged.setdefault(name, kb * 1024)
        if error and error != "ModuleNotFoundError":  # `nt`, `_winapi`: tried and absent on Linux
            failed.append(f"{name} ({error})")
    # importtime prints a module after the modules it imported, one level deeper: its children are
    # the deeper entries just before it.
    stack: list[Imported] = []
    for row in rows:
        row.rss = charged.pop(row.name, 0)  # a name listed twice is charged once
        children = 0
        while stack and stack[-1].depth > row.depth:
            child = stack.pop()
            child.parent = row.name
            children += child.cumulative_rss
        row.cumulative_rss = row.rss + children
        stack.append(row)
    return int(replay["start"]) * 1024, int(replay["end"]) * 1024, failed


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[0] == "torchdoctor" else parts[0]


def report_imports(desktop: Desktop, fixture: Fixture, index_url: str) -> None:
    print("\n== import cost: fresh interpreters in the private desktop, VmRSS (median of 3)")
    tray_app = ["torchdoctor.agent.cli", "torchdoctor.agent.commands.tray", "torchdoctor.agent.tray.app"]
    # (label, PYSTRAY_BACKEND, modules, the step it adds to)
    steps: list[tuple[str, str, list[str], int]] = [
        ("bare python -c", "xorg", [], 0),
        ("import torchdoctor.agent.cli", "xorg", tray_app[:1], 0),
        ("+ torchdoctor.agent.commands.tray", "xorg", tray_app[:2], 1),
        ("+ torchdoctor.agent.tray.app", "xorg", tray_app, 2),
    ]
    for backend in BACKENDS:
        if backend == "appindicator" and importlib.util.find_spec("gi") is None:
            print("   (appindicator: PyGObject is not installed; skipped)")
            continue
        steps.append((f"  + pystray ({backend})", backend, [*tray_app, "pystray"], 3))
        steps.append(
            ("    + desktop_notifier", backend, [*tray_app, "pystray", "desktop_notifier"], len(steps) - 1)
        )
    values: list[int] = []
    for label, backend, modules, base in steps:
        values.append(probe_rss(desktop, backend, modules))
        over, step = values[-1] - values[0], values[-1] - values[base]
        print(
            f"   {label:<38} {mb(values[-1]):>9}  ({over / MB:+5.1f} MB over bare, "
            f"{step / MB:+5.1f} this step)"
        )

    rows = import_times(desktop, fixture, index_url)
    if not rows:
        print("   -X importtime: no output (the tray did not start)")
        return
    before, after, failed = replay_rss(desktop, rows)
    total = sum(r.self_us for r in rows)
    print(
        f"\n   -X importtime of an xorg tray, start to first check: {len(rows)} modules, "
        f"{total / 1000:.0f} ms; "
        f"RSS replayed one import at a time: {mb(before)} -> {mb(after)}"
    )
    if failed:
        print(f"   ({len(failed)} would not import alone: {', '.join(failed[:6])})")
    heading = f"   {'cumul. ms':>9} {'self ms':>8} {'cumul. MB':>9} {'self MB':>8}  module"

    def table(title: str, chosen: list[Imported], key: str) -> None:
        print(f"   {title}\n{heading}")
        for r in sorted(chosen, key=lambda r: getattr(r, key), reverse=True)[:10]:
            print(
                f"   {r.cumulative_us / 1000:9.1f} {r.self_us / 1000:8.1f} {r.cumulative_rss / MB:9.2f} "
                f"{r.rss / MB:8.2f}  {r.name}" + (f"  (by {r.parent})" if r.parent else "")
            )

    outside = [r for r in rows if not r.name.startswith("torchdoctor")]
    table("top 10 by cumulative import time:", rows, "cumulative_us")
    table("top 10 by cumulative import time, torchdoctor's own modules left out:", outside, "cumulative_us")
    table("top 10 by cumulative RSS (what a module and the imports it pulled in first added):", rows,
          "cumulative_rss")  # fmt: skip
    table("top 10 by cumulative RSS, torchdoctor's own modules left out:", outside, "cumulative_rss")
    by_package: dict[str, int] = {}
    for r in rows:
        by_package[package_of(r.name)] = by_package.get(package_of(r.name), 0) + r.rss
    ranked = sorted(by_package.items(), key=lambda item: item[1], reverse=True)[:12]
    print("   RSS by package: " + ", ".join(f"{name} {size / MB:.1f}" for name, size in ranked) + " (MB)")


# --- main --------------------------------------------------------------------------------------


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def private_desktop(keep: bool, name: str) -> Iterator[Desktop]:
    """A desktop of its own in a temporary folder; a desktop that fails to come up is tried once more
    (on a loaded machine tint2 now and then misses the readiness timeout)."""
    folder = Path(tempfile.mkdtemp(prefix=f"td-idle-{name}-"))
    try:
        with contextlib.ExitStack() as stack:
            try:
                desktop = stack.enter_context(Desktop.start(folder / "desktop"))
            except DesktopError as exc:
                print(f"the desktop did not start ({str(exc).splitlines()[0]}); once more", file=sys.stderr)
                desktop = stack.enter_context(Desktop.start(folder / "desktop-2"))
            yield desktop
    finally:
        if keep:
            print(f"(kept {folder})", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def summary(results: dict[str, Figures]) -> None:
    if len(results) < 2:
        return
    print("\n== side by side")
    print(
        f"   {'backend':<14}{'RSS max':>10}{'median':>10}{'USS':>10}{'growth':>10}{'CPU %':>8}"
        f"{'per cycle':>11}"
    )
    for backend, f in results.items():
        uss = mb(f.uss_median) if f.uss_median else "-"
        cycle = f"{f.cpu_per_cycle * 1000:.0f} ms" if f.cpu_per_cycle is not None else "-"
        print(
            f"   {backend:<14}{mb(f.rss_max):>10}{mb(f.rss_median):>10}{uss:>10}{f.growth / MB:>+7.2f} MB"
            f"{f.cpu_after_first:>8.3f}{cycle:>11}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="per backend (default 10)")
    parser.add_argument(
        "--backend", choices=[*BACKENDS, "both", "none"], default="both", help="none: the import cost only"
    )
    parser.add_argument("--no-imports", action="store_true", help="skip the import cost section")
    parser.add_argument(
        "--keep", action="store_true", help="keep the desktops' folders (their logs, the tray's)"
    )
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("this benchmark runs the tray in a private X desktop: Linux only")
    if args.minutes < 1:
        raise SystemExit("--minutes must be at least 1 (the first and last minute are compared)")
    signal.signal(signal.SIGTERM, _interrupt)  # a kill tears the desktops down as Ctrl-C does

    backends = {"both": list(BACKENDS), "none": []}.get(args.backend, [args.backend])
    if "appindicator" in backends and importlib.util.find_spec("gi") is None:
        print(
            "appindicator skipped: PyGObject is not installed (the optional linux-tray extra)",
            file=sys.stderr,
        )
        backends.remove("appindicator")
    results: dict[str, Figures] = {}
    try:
        fixture = build_fixture()
        print(
            f"python {sys.version.split()[0]}, psutil {psutil.__version__}, {psutil.cpu_count()} CPUs; "
            f"{len(fixture.envs)} environments ({fixture.fitting} fit, {fixture.broken} broken and planned), "
            f"driver {HARDWARE['driver_version']} (CUDA {HARDWARE['cuda_driver_version']})"
        )
        with IndexServer(fixture.index) as index:
            if not args.no_imports:
                with private_desktop(args.keep, "imports") as desktop:
                    report_imports(desktop, fixture, index.url)
            for backend in backends:
                print(f"measuring the {backend} tray for {args.minutes:g} min...", file=sys.stderr)
                with private_desktop(args.keep, backend) as desktop:
                    run = measure(desktop, backend, args.minutes, fixture, index.url)
                found = report(run)
                if found is not None:
                    results[backend] = found
                if run.interrupted:
                    return 130
        summary(results)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except DesktopError as exc:
        print(f"the private desktop failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

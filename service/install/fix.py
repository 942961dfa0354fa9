"""Applying a plan to an environment, reversibly.

The order matters, and each step says why it is where it is:
  1. lock the environment            two fixes at once would interleave their file changes
  2. refuse if a process uses it     on Windows its DLLs are locked and pip fails half-way; a
                                     restore under a running program is as bad as an install
  3. end an interrupted fix's        a SIGKILLed fix's uv or pip survives it and keeps writing;
     installer                       the restore must not race it
  4. restore an interrupted fix      a killed earlier run left a pending snapshot; plan from what
                                     was there before it, not from its half-installed files
     (then the caller plans and asks the user, still holding the lock)
  5. refuse if a process uses it     again: time passed while planning and asking
  6. download and hash-check wheels  before anything changes: the network failing costs nothing
  7. snapshot what may change        the torch family and what it requires; hard links, so a
                                     5 GB CUDA torch costs no copy
  8. install, clean, verify, check,  any failure or Ctrl-C restores the snapshot exactly; "clean"
     benchmark                       removes stale records of other versions (a `torch-2.5.1
                                     .dist-info` beside the new one), "check" runs `check`'s own
                                     rules, so fix never says "verified" where check would not
  9. discard the snapshot            only once the new build has proven itself
An externally managed Python (PEP 668) is refused before step 1 unless the user said
--break-system-packages (`check_externally_managed`).
The UI (CLI or tray) sees progress through a `Reporter` and decides nothing here.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import shutil
import signal
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TextIO

from packaging.version import InvalidVersion, Version

from torchdoctor.service.bench.history import bench_and_record
from torchdoctor.service.bench.run import BenchResult
from torchdoctor.service.envs.builds import (
    BuildReading,
    dist_info_folders,
    installed_distributions,
    read_dist_info,
    requirement_names,
    wheel_requirements,
)
from torchdoctor.service.errors import BadInputError, TorchdoctorError
from torchdoctor.service.facts.knowledge import Knowledge
from torchdoctor.service.facts.variants import variant_cuda
from torchdoctor.service.install import killpoints
from torchdoctor.service.install.download import download
from torchdoctor.service.install.envguard import (
    EnvironmentInUseError,
    Interrupted,
    ensure_not_in_use,
    processes_using,
    settle_orphans,
    split_orphans,
)
from torchdoctor.service.install.envlock import env_lock
from torchdoctor.service.install.index import IndexFile
from torchdoctor.service.install.installers import Backend
from torchdoctor.service.install.policy import Plan
from torchdoctor.service.install.resolve import installer_changes
from torchdoctor.service.install.snapshot import (
    TORCH_FAMILY,
    RestoreFailedError,
    Snapshot,
    discard_snapshot,
    pending_snapshots,
    recover,
    restore_snapshot,
    take_snapshot,
)
from torchdoctor.service.install.verify import Verification, verify_build
from torchdoctor.service.models import (
    EnvKind,
    EnvReport,
    Finding,
    FindingCode,
    Hardware,
    Installer,
    Platform,
    PythonEnv,
    Severity,
)
from torchdoctor.service.rules.check import check_environment, user_site_torch_of
from torchdoctor.service.rules.fit import FitLevel, build_fit
from torchdoctor.service.rules.usersite import user_site_finding

INSTALL_TIMEOUT_S = 3600.0  # a CUDA torch with its nvidia-* dependencies on a slow line
# Counted from when torch has been imported: the first import has verify's own allowance
# (FIRST_IMPORT_TIMEOUT_S), since Windows Defender can hold it for 15-30 s after an install.
VERIFY_TIMEOUT_S = 180.0
EXTERNALLY_MANAGED: Final = "EXTERNALLY-MANAGED"  # PEP 668's marker file


class FixFailedError(TorchdoctorError):
    """The fix did not succeed and the environment was restored exactly (exit 1)."""

    code = "fix-failed"


class CondaMixRefusedError(TorchdoctorError):
    """torch came from conda; replacing it with pip wheels needs explicit consent (exit 1)."""

    code = "conda-mix"


class UserSiteTorchError(TorchdoctorError):
    """A torch in the user site is what this Python imports: replacing the one in site-packages
    would change nothing that runs, and the post-install check would roll it back (exit 1)."""

    code = "user-site-torch"


class ExternallyManagedError(BadInputError):
    """PEP 668: the Python says its packages belong to the system's package manager (exit 2)."""

    code = "externally-managed"


class Reporter(Protocol):
    """How `apply_plan` tells a person what it is doing. Called from the calling thread."""

    def step(self, text: str) -> None: ...

    def detail(self, text: str) -> None: ...

    def download(self, file: IndexFile, done: int, total: int | None) -> None: ...


@dataclass(frozen=True, slots=True)
class FixOptions:
    run_bench: bool = True
    allow_conda_mix: bool = False
    break_system_packages: bool = False  # install into an externally managed Python anyway
    install_timeout: float = INSTALL_TIMEOUT_S
    verify_timeout: float = VERIFY_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class FixResult:
    plan: Plan
    verification: Verification
    bench: BenchResult | None
    seconds: float


@contextlib.contextmanager
def fix_session(env: PythonEnv, reporter: Reporter) -> Iterator[Snapshot | None]:
    """Steps 1 to 4: hold the environment's lock, refuse if a program uses it, end what an
    interrupted fix left running, and only then restore that fix's snapshot.

    Yields the recovered snapshot (None if there was none). Plan and call `apply_plan` inside.
    """
    with env_lock(env):
        interrupted = [Interrupted(s.pid, s.created) for s in pending_snapshots(env)]
        orphans, others = split_orphans(processes_using(env), interrupted)
        if others:
            raise EnvironmentInUseError(env.root, others)
        if orphans:
            names = ", ".join(o.describe() for o in orphans)
            reporter.step(f"Stopping what an interrupted fix left running: {names}")
            settle_orphans(env, orphans)
        recovery = recover(env)
        for leftover in recovery.set_aside:
            reporter.step(leftover.message()[:1].upper() + leftover.message()[1:])
        recovered = recovery.restored
        if recovered is not None:
            reporter.step(f"An earlier fix was interrupted; restored {_describe_before(recovered)} first")
        yield recovered


def check_conda(installed: BuildReading | None, options: FixOptions) -> None:
    if installed is None or installed.build.installer is not Installer.CONDA or options.allow_conda_mix:
        return
    raise CondaMixRefusedError(
        f"torch {installed.build.version} here was installed by conda; replacing it with pip wheels "
        "mixes two package managers in one environment",
        hint="use `conda install` to change it, or pass --allow-conda-mix to let torchdoctor use pip anyway",
    )


def check_user_site(env: PythonEnv, installed: BuildReading | None) -> None:
    """Refuse before any download when check's `torch-in-user-site` rule says the user site's torch
    is the one imported (a base Python, or a venv with system site-packages and no torch of its own):
    the same rule `fix` judges its result by afterwards, asked first."""
    user = user_site_torch_of(env)
    if user is None:
        return
    finding = user_site_finding(env, installed.build if installed else None, user)
    if finding.severity is Severity.INFO:
        return
    raise UserSiteTorchError(finding.message, hint=finding.fix)


def externally_managed_marker(env: PythonEnv) -> Path | None:
    """The PEP 668 `EXTERNALLY-MANAGED` file that covers `env`'s interpreter, or None.

    The file lives in the interpreter's stdlib folder (`sysconfig.get_path("stdlib")`):
    `<root>/lib/pythonX.Y/` on POSIX (Debian's /usr/lib/python3.11/EXTERNALLY-MANAGED), `<root>\\Lib\\`
    on Windows. Read from the layout, without starting the interpreter. A venv is never covered:
    PEP 668 exempts every interpreter whose `sys.prefix` differs from `sys.base_prefix`.
    """
    if env.kind is EnvKind.VENV:
        return None
    if env.platform is Platform.WINDOWS:
        folders = [env.root / "Lib"]
    else:
        parts = (env.python_version or "").split(".")
        minor = ".".join(parts[:2]) if len(parts) >= 2 else None
        names = {f"python{minor}", f"python{minor}t"} if minor else None
        try:
            folders = sorted(
                d for d in (env.root / "lib").glob("python3*") if names is None or d.name in names
            )
        except OSError:
            return None
    return next((f / EXTERNALLY_MANAGED for f in folders if (f / EXTERNALLY_MANAGED).is_file()), None)


def externally_managed_error(marker: Path) -> str | None:
    """The first line of the marker's `Error=` text (PEP 668's message for people), if it has one."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(marker.read_text(encoding="utf-8", errors="replace"))
        text = parser.get("externally-managed", "Error", fallback=None)
    except (OSError, configparser.Error):
        return None
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), None)


def check_externally_managed(env: PythonEnv, options: FixOptions) -> None:
    """Refuse an externally managed Python (exit 2) unless the user passed --break-system-packages."""
    marker = None if options.break_system_packages else externally_managed_marker(env)
    if marker is None:
        return
    said = externally_managed_error(marker)
    venv = Path.home() / "venvs" / "torch"  # a real path to copy, not a placeholder
    raise ExternallyManagedError(
        f"{env.root} is an externally managed Python (PEP 668, {marker})"
        + (f": {said.rstrip('.')}." if said else ".")
        + " torchdoctor installs into it only with --break-system-packages",
        hint=f"make a virtual environment (`{env.python} -m venv {venv}`) and run "
        f"`torchdoctor fix --env {venv}`, or pass --break-system-packages to install into this one "
        "anyway, as pip would",
    )


def _same_version(text: str, want: str) -> bool:
    try:
        return Version(text) == Version(want)
    except InvalidVersion:
        return text == want


def remove_stale_records(env: PythonEnv, plan: Plan) -> list[Path]:
    """Remove the planned projects' dist-info folders of any other version; return them.

    Run after installing, inside the snapshot (which saved every dist-info folder of the family,
    stale ones included, so a restore puts them back). A stale record (`torch-2.5.1.dist-info`
    left beside `torch-2.7.1+cu128.dist-info`, or the one pip leaves when two were there) makes
    `check` report torch-unreadable. Nothing is removed for a project without a record of the
    planned version: the check that follows reports that one.
    """
    wanted = {f.project: str(f.version) for f in plan.files}
    removed: list[Path] = []
    for name, folders in dist_info_folders(env.site_packages, wanted).items():
        versions = {path: _record_version(path) for path in folders}
        if not any(v is not None and _same_version(v, wanted[name]) for v in versions.values()):
            continue
        for path, version in versions.items():
            if version is None or not _same_version(version, wanted[name]):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    return removed


def _record_version(path: Path) -> str | None:
    info = read_dist_info(path)
    return info.version if info is not None else None


def _expected_findings(
    plan: Plan, hardware: Hardware, knowledge: Knowledge, env: PythonEnv
) -> set[FindingCode]:
    """Findings the plan itself announced: a build chosen because it is the best there is while
    running through CUDA minor-version compatibility draws `driver-minor-compat` by design."""
    if not plan.variant.startswith("cu") or not hardware.has_nvidia_gpu:
        return set()
    fit = build_fit(knowledge, str(plan.torch.version), plan.variant, hardware, platform=env.platform)
    return {FindingCode.DRIVER_MINOR_COMPAT} if fit.level is FitLevel.MINOR_COMPAT else set()


def check_problem(report: EnvReport, expected: Collection[FindingCode] = ()) -> Finding | None:
    """The finding that makes `check` call the environment not ok (errors first), or None.

    Info findings never count; `expected` are warnings the plan already announced.
    """
    rank = {Severity.ERROR: 0, Severity.WARN: 1}
    failing = [f for f in report.findings if f.severity in rank and f.code not in expected]
    return min(failing, key=lambda f: rank[f.severity], default=None)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """A second Ctrl-C must not cut a restore in half (the next fix would recover, but still)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def projects_to_save(
    env: PythonEnv, wheels: Sequence[Path], resolved: Collection[str] = ()
) -> tuple[str, ...]:
    """The torch family, and every project the installer may add, upgrade or downgrade for it.

    The installer's dependency step changes more than the torch family (a pinned triton, nvidia-*
    libraries, numpy for torchvision); restoring "exactly" means restoring those too. `resolved`
    is what the installer's own dry run says it would change (resolve.installer_changes): the only
    source that sees a new dependency upgrading an installed one. Added to it: what the incoming
    wheels require and, transitively, what the named installed projects require (in case the dry
    run could not run). A project named but not installed yet is saved as "absent", so a restore
    removes it.
    """
    installed = installed_distributions(env.site_packages)
    names = set(TORCH_FAMILY) | set(resolved)
    for wheel in wheels:
        names |= requirement_names(wheel_requirements(wheel))
    queue = list(names)
    while queue:
        info = installed.get(queue.pop())
        for name in requirement_names(info.requires) if info is not None else ():
            if name not in names:
                names.add(name)
                queue.append(name)
    return tuple(sorted(names))


def _restore(
    snapshot: Snapshot, before: dict[str, str], env: PythonEnv, reporter: Reporter, log: TextIO
) -> None:
    """Put the snapshot back, and remove projects that appeared during the fix and were not named
    up front (dependencies of new dependencies).

    A project that was installed before, is not in the snapshot, and changed version is one the
    dry run and the metadata both missed: its old files are gone, so the restore cannot be exact,
    and saying "restored exactly" would be a lie. That is RestoreFailedError (exit 3), naming it.
    """
    reporter.step("Restoring the previous torch files")
    now = {name: info.version for name, info in installed_distributions(env.site_packages).items()}
    appeared = set(now) - set(before) - set(snapshot.projects)
    if appeared:
        snapshot = dataclasses.replace(snapshot, projects=(*snapshot.projects, *sorted(appeared)))
    with _uninterruptible():
        restore_snapshot(snapshot)  # RestoreFailedError (exit 3) propagates
    log.write(f"restored snapshot {snapshot.id} ({len(snapshot.files)} files; removed {sorted(appeared)})\n")
    unsaved = sorted(
        f"{name} {version} (now {now.get(name, 'removed')})"
        for name, version in before.items()
        if now.get(name) != version and name not in snapshot.projects
    )
    if unsaved:
        raise RestoreFailedError(
            "the installer also changed " + ", ".join(unsaved) + ", which was not saved; the rest was "
            "restored",
            hint="reinstall those versions by hand (pip install NAME==VERSION)",
        )


def _describe_before(snapshot: Snapshot) -> str:
    torch = snapshot.versions.get("torch")
    return f"torch {torch}" if torch else "the environment without torch"


def _verify_and_check(
    env: PythonEnv,
    plan: Plan,
    hardware: Hardware,
    *,
    knowledge: Knowledge,
    options: FixOptions,
    reporter: Reporter,
    log: TextIO,
) -> Verification:
    """Step 6 after the installer: import the new build, then judge its files as `check` does.

    Raises FixFailedError for the first thing that is wrong; the caller restores.
    """
    reporter.step("Verifying the new build in a fresh interpreter")
    verification = verify_build(
        env,
        expected_version=str(plan.torch.version),
        expected_cuda=variant_cuda(plan.variant),
        check_gpus=hardware.probed and hardware.has_nvidia_gpu,
        timeout=options.verify_timeout,
        expected_companions={f.project: str(f.version) for f in plan.companions},
    )
    log.write(f"verification: ok={verification.ok} facts={verification.facts}\n")
    if not verification.ok:
        raise FixFailedError("the new build failed verification: " + "; ".join(verification.problems))
    # One verdict: what `check` would say now, with the plan's hardware and knowledge.
    report = check_environment(env, hardware, knowledge)
    log.write(f"check: {report.status} {[str(f.code) for f in report.findings]}\n")
    problem = check_problem(report, _expected_findings(plan, hardware, knowledge, env))
    if problem is not None:
        raise FixFailedError(
            f"`check` still finds a problem after installing ({problem.code}): {problem.message}"
        )
    return verification


def apply_plan(
    env: PythonEnv,
    plan: Plan,
    hardware: Hardware,
    *,
    knowledge: Knowledge,
    backend: Backend,
    reporter: Reporter,
    log: TextIO,
    options: FixOptions = FixOptions(),
    download_dir: Path | None = None,
) -> FixResult:
    """Install `plan` into `env`, or leave `env` exactly as it was and raise FixFailedError.

    Call inside `fix_session(env)`. Raises EnvironmentInUseError / DownloadError before changing
    anything, and RestoreFailedError (exit 3) only if the environment could not be put back.
    `hardware` and `knowledge` are the plan's: after installing, `check`'s rules judge the result
    with them, and a warning or error fails the fix as verification does.
    """
    started = time.monotonic()
    check_gpus = hardware.probed and hardware.has_nvidia_gpu
    ensure_not_in_use(env)

    wheels: list[Path] = []
    for file in plan.files:
        size = f" ({file.size / 2**20:.0f} MiB)" if file.size else ""
        reporter.step(f"Downloading {file.filename}{size}")
        wheels.append(
            download(
                file,
                dest_dir=download_dir,
                progress=reporter.download,
            )
        )
        log.write(f"downloaded {file.url} (sha256 {file.sha256 or 'not published'})\n")

    backend.preflight(env)
    reporter.step("Working out what the installer will change")
    resolution = installer_changes(backend, env, wheels, index_url=plan.index_url)
    log.write(f"dry run: {sorted(resolution.names)} {resolution.note or ''}\n")
    reporter.step("Saving the current torch files so they can be restored")
    before = {name: info.version for name, info in installed_distributions(env.site_packages).items()}
    killpoints.reached("before-snapshot")
    snapshot = take_snapshot(env, projects=projects_to_save(env, wheels, resolution.names), incoming=wheels)
    log.write(f"snapshot {snapshot.id}: {len(snapshot.files)} files, {snapshot.linked} linked\n")
    try:
        reporter.step(f"Installing with {backend.name}")
        killpoints.reached("install-started")
        backend.install(
            env,
            wheels,
            index_url=plan.index_url,
            log=log,
            timeout=options.install_timeout,
            progress=reporter.detail,
        )
        killpoints.reached("installed")
        for stale in remove_stale_records(env, plan):
            reporter.detail(f"Removed the stale record {stale.name}")
            log.write(f"removed stale record {stale}\n")
        killpoints.reached("stale-removed")
        verification = _verify_and_check(
            env, plan, hardware, knowledge=knowledge, options=options, reporter=reporter, log=log
        )
        killpoints.reached("verified")
        bench: BenchResult | None = None
        if options.run_bench:
            reporter.step("Running the sanity benchmark")
            bench = bench_and_record(env, device="auto", expect_gpu=check_gpus, progress=reporter.detail)
            log.write(f"benchmark: passed={bench.passed} reason={bench.reason}\n")
            if not bench.passed:
                raise FixFailedError(
                    f"the new build failed the sanity benchmark: {bench.reason}",
                    hint="`torchdoctor bench --env` shows the details; --no-bench keeps a build "
                    "that passes verification without benchmarking it",
                )
    except RestoreFailedError:
        raise
    except KeyboardInterrupt:
        _restore(snapshot, before, env, reporter, log)
        raise FixFailedError(f"interrupted; {_describe_before(snapshot)} was restored exactly") from None
    except FixFailedError as exc:
        _restore(snapshot, before, env, reporter, log)
        raise FixFailedError(
            f"{exc.message}; {_describe_before(snapshot)} was restored exactly", hint=exc.hint
        ) from None
    except Exception as exc:
        _restore(snapshot, before, env, reporter, log)
        message = exc.message if isinstance(exc, TorchdoctorError) else f"{type(exc).__name__}: {exc}"
        hint = exc.hint if isinstance(exc, TorchdoctorError) else None
        raise FixFailedError(
            f"{message}; {_describe_before(snapshot)} was restored exactly", hint=hint
        ) from exc
    discard_snapshot(snapshot)
    return FixResult(plan, verification, bench, time.monotonic() - started)

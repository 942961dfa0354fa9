"""Does the newly installed torch work? Asked in a fresh interpreter of the environment itself.

`verify_build` runs `ENV_PY -I -c VERIFY_SCRIPT [--gpus] [--companion NAME]...` (in an empty
temporary folder, so a `torch/` folder in the current directory cannot shadow the installed one)
and reads back one JSON object. `judge` compares those facts with what the plan promised; it is
pure, so every rule is unit-tested without an environment. What DESIGN.md asks of `fix`:
`import torch`; `torch.__version__` equals the plan; `torch.version.cuda` matches the variant; and,
only when the hardware was probed for real, `torch.cuda.is_available()` plus a small computation
on each GPU compared with the CPU's.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from packaging.version import InvalidVersion, Version

from torchdoctor.service import proc
from torchdoctor.service.bench.run import FIRST_IMPORT_TIMEOUT_S, staged_limit
from torchdoctor.service.errors import SubprocessTimeoutError
from torchdoctor.service.models import PythonEnv

# The largest acceptable max |C - R| / (|A| @ |B|) of a 64x64 float32 product against the float64
# CPU reference. Correct float32 (even TF32) results score about 1e-3 or far less; a wrong kernel
# or garbage memory scores near 1. Same componentwise bound as the benchmark (Higham, sec. 3.5).
MATMUL_TOLERANCE: Final = 1e-2

# Runs inside the environment: standard library only, Python 3.8 syntax (no `X | Y`, no match,
# no 3.9+ APIs). It always prints exactly one JSON object on the real stdout; whatever torch itself
# prints goes to stderr because file descriptor 1 is pointed there while torch runs.
VERIFY_SCRIPT: Final = r"""
import json, math, os, sys, traceback


def _error(exc):
    where = None
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = "%s:%s in %s" % (last.filename, last.lineno, last.name)
    # The Windows error number, not the localized text, is what a hint may rest on.
    winerror = getattr(exc, "winerror", None)
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "where": where,
            "winerror": winerror if isinstance(winerror, int) else None}


def _matmul(torch, index):
    result = {"index": index}
    try:
        result["name"] = torch.cuda.get_device_name(index)
        gen = torch.Generator().manual_seed(index + 1)
        a = torch.rand(64, 64, generator=gen) * 2 - 1
        b = torch.rand(64, 64, generator=gen) * 2 - 1
        ref = a.double() @ b.double()
        bound = a.double().abs() @ b.double().abs()
        device = torch.device("cuda", index)
        got = (a.to(device) @ b.to(device)).cpu().double()
        torch.cuda.synchronize(device)
        err = float(((got - ref).abs() / bound).max().item())
        result["max_rel_err"] = err if math.isfinite(err) else None
        if not math.isfinite(err):
            result["error"] = {"type": "NonFinite", "message": "NaN or inf in the result", "where": None}
    except BaseException as exc:
        result["error"] = _error(exc)
    return result


def _gpus(torch, out):
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count()) if out["cuda_available"] else 0
        out["device_count"] = count
        out["gpus"] = [_matmul(torch, i) for i in range(count)]
    except BaseException as exc:
        out["gpu_error"] = _error(exc)


def _companions(names, out):
    found = {}
    for name in names:
        try:
            module = __import__(name)
            found[name] = {"version": str(getattr(module, "__version__", None))}
        except BaseException as exc:
            found[name] = {"error": _error(exc)}
    out["companions"] = found


def _imported(args):
    # Tells the parent the first import is over: its allowance ends and the work's timeout starts.
    if "--progress" in args[:-1]:
        try:
            with open(args[args.index("--progress") + 1], "w") as handle:
                handle.write("imported\n")
        except OSError:
            pass


def main():
    args = sys.argv[1:]
    companions = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--companion"]
    out = {"python": sys.version.split()[0], "imported": False}
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        try:
            import torch
        except BaseException as exc:
            out["error"] = _error(exc)
        else:
            _imported(args)
            out["imported"] = True
            out["torch_file"] = getattr(torch, "__file__", None)
            version = getattr(torch, "__version__", None)
            out["version"] = None if version is None else str(version)
            tv = getattr(torch, "version", None)
            cuda = getattr(tv, "cuda", None)
            out["cuda"] = None if cuda is None else str(cuda)
            if "--gpus" in args:
                _gpus(torch, out)
            _companions(companions, out)
    finally:
        sys.stdout.flush()
        os.write(real_stdout, (json.dumps(out) + "\n").encode("utf-8"))


main()
"""


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    problems: tuple[str, ...]  # one sentence each, for the log and the `fix` output
    facts: dict[str, object]  # what the script reported (or what went wrong running it)


def _same_version(got: str, want: str) -> bool:
    try:
        return Version(got) == Version(want)
    except InvalidVersion:
        return got == want


def _major_minor(cuda: str) -> tuple[str, ...]:
    return tuple(cuda.strip().split(".")[:2])


def _describe_error(error: object) -> str:
    if not isinstance(error, Mapping):
        return "unknown error"
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")
    where = error.get("where")
    return f"{text} (at {where})" if where else text


def _gpu_problems(facts: Mapping[str, object]) -> list[str]:
    if "gpu_error" in facts:
        return [f"the GPU check failed: {_describe_error(facts['gpu_error'])}"]
    if facts.get("cuda_available") is not True:
        return ["torch.cuda.is_available() is False: this build cannot use the GPU with this driver"]
    gpus = facts.get("gpus")
    if not isinstance(gpus, list) or not gpus or facts.get("device_count") == 0:
        return ["torch sees no GPU (torch.cuda.device_count() is 0)"]
    problems: list[str] = []
    for gpu in gpus:
        if not isinstance(gpu, Mapping):
            continue
        label = f"GPU {gpu.get('index')}" + (f" ({gpu['name']})" if gpu.get("name") else "")
        err = gpu.get("max_rel_err")
        if "error" in gpu:
            problems.append(f"{label}: a small matrix product failed: {_describe_error(gpu['error'])}")
        elif not isinstance(err, (int, float)) or err > MATMUL_TOLERANCE:
            detail = f"relative error {err:.2g}" if isinstance(err, (int, float)) else "no result"
            problems.append(f"{label}: a small matrix product differs from the CPU's ({detail})")
    return problems


def judge(
    facts: Mapping[str, object],
    *,
    expected_version: str,
    expected_cuda: str | None,
    check_gpus: bool,
    expected_companions: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """The problems with a verification's facts; empty means the build is what the plan promised."""
    if facts.get("imported") is not True:
        return (f"import torch failed: {_describe_error(facts.get('error'))}",)
    problems: list[str] = []
    version = facts.get("version")
    if not isinstance(version, str) or not _same_version(version, expected_version):
        problems.append(f"torch reports version {version}, but {expected_version} was installed")
    cuda = facts.get("cuda")
    if expected_cuda is None and cuda is not None:
        problems.append(f"torch was built for CUDA {cuda}, but a CPU build was installed")
    elif expected_cuda is not None and not isinstance(cuda, str):
        problems.append(
            f"torch has no CUDA support (torch.version.cuda is None), expected CUDA {expected_cuda}"
        )
    elif (
        expected_cuda is not None
        and isinstance(cuda, str)
        and _major_minor(cuda) != _major_minor(expected_cuda)
    ):
        problems.append(f"torch was built for CUDA {cuda}, expected CUDA {expected_cuda}")
    if check_gpus:
        problems += _gpu_problems(facts)
    found = facts.get("companions")
    for name, want in (expected_companions or {}).items():
        entry = found.get(name) if isinstance(found, Mapping) else None
        if not isinstance(entry, Mapping):
            problems.append(f"{name} was not checked")
        elif "error" in entry:
            problems.append(f"import {name} failed: {_describe_error(entry['error'])}")
        elif not isinstance(entry.get("version"), str) or not _same_version(str(entry["version"]), want):
            problems.append(f"{name} reports version {entry.get('version')}, but {want} was installed")
    return tuple(problems)


def parse_output(stdout: str) -> dict[str, object] | None:
    """The script's JSON object: the last stdout line that parses as one."""
    for line in reversed(stdout.splitlines()):
        text = line.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


def verify_argv(
    python: Path, *, check_gpus: bool, companions: Sequence[str] = (), progress: Path | None = None
) -> list[str]:
    argv = [os.fspath(python), "-I", "-c", VERIFY_SCRIPT]
    if progress is not None:
        argv += ["--progress", os.fspath(progress)]
    if check_gpus:
        argv.append("--gpus")
    for name in companions:
        argv += ["--companion", name]
    return argv


class _ImportWatch:
    """When the verification script said it had imported torch (it writes `marker` then)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.started = time.monotonic()
        self.imported_at: float | None = None

    def poll(self) -> None:
        if self.imported_at is None and self.marker.is_file():
            self.imported_at = time.monotonic()


def _scrubbed_environ() -> dict[str, str]:
    # -I already ignores PYTHON* variables; these two would still steer where torch comes from.
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}


def verify_build(
    env: PythonEnv,
    *,
    expected_version: str,
    expected_cuda: str | None,
    check_gpus: bool,
    timeout: float = 120.0,
    expected_companions: Mapping[str, str] | None = None,
    import_timeout: float = FIRST_IMPORT_TIMEOUT_S,
) -> Verification:
    """Import the environment's torch in a fresh process and judge it. Never raises for a broken
    environment: every failure (no interpreter, a hang, a crash) becomes a problem.

    The first import has `import_timeout` (Windows Defender scans every new DLL of a fresh
    install); `timeout` counts from when torch has been imported, so a slow first import never
    rolls back a good install."""
    with tempfile.TemporaryDirectory(prefix="td-verify-") as cwd:
        marker = Path(cwd) / "imported.txt"
        argv = verify_argv(
            env.python,
            check_gpus=check_gpus,
            companions=tuple(expected_companions or ()),
            progress=marker,
        )
        watch = _ImportWatch(marker)
        try:
            done = proc.run_watched(
                argv,
                limit=lambda: staged_limit(
                    watch.started, watch.imported_at, import_timeout=import_timeout, timeout=timeout
                ),
                watch=watch.poll,
                env=_scrubbed_environ(),
                cwd=Path(cwd),
            )
        except SubprocessTimeoutError:
            if watch.imported_at is None:
                problem = f"importing torch did not finish within {import_timeout:g} s"
            else:
                problem = f"the check did not finish within {timeout:g} s after importing torch"
            return Verification(False, (problem,), {"error": {"type": "Timeout", "message": problem}})
        except OSError as exc:
            problem = f"could not start {env.python}: {exc.strerror or exc}"
            return Verification(False, (problem,), {"error": {"type": "OSError", "message": problem}})
    facts = parse_output(done.stdout)
    if facts is None:
        # The interpreter died before printing (a crash in a native library, a killed process).
        last = next((ln.strip() for ln in reversed(done.stderr.splitlines()) if ln.strip()), "no output")
        problem = f"the check crashed (exit status {done.returncode}): {last}"
        return Verification(False, (problem,), {"error": {"type": "Crash", "message": problem}})
    problems = judge(
        facts,
        expected_version=expected_version,
        expected_cuda=expected_cuda,
        check_gpus=check_gpus,
        expected_companions=expected_companions,
    )
    return Verification(not problems, problems, facts)

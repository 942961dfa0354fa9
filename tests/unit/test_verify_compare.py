"""Judging a new build from what the verification script reports (pure), and the script's contract."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from torchdoctor.service.install.verify import (
    MATMUL_TOLERANCE,
    VERIFY_SCRIPT,
    judge,
    parse_output,
    verify_argv,
    verify_build,
)
from torchdoctor.service.models import EnvKind, Platform, PythonEnv

GOOD_CUDA = {
    "imported": True,
    "version": "2.7.1+cu128",
    "cuda": "12.8",
    "cuda_available": True,
    "device_count": 2,
    "gpus": [
        {"index": 0, "name": "NVIDIA GeForce RTX 5090", "max_rel_err": 2e-7},
        {"index": 1, "name": "NVIDIA GeForce RTX 4090", "max_rel_err": 3e-4},
    ],
    "companions": {"torchvision": {"version": "0.22.1+cu128"}},
}


def problems(facts: dict[str, object], **kw: object) -> tuple[str, ...]:
    args: dict[str, object] = {"expected_version": "2.7.1+cu128", "expected_cuda": "12.8", "check_gpus": True}
    args.update(kw)
    return judge(facts, **args)  # type: ignore[arg-type]


def test_a_good_cuda_build_has_no_problems() -> None:
    assert problems(GOOD_CUDA, expected_companions={"torchvision": "0.22.1+cu128"}) == ()


def test_an_import_failure_is_the_only_problem_and_names_the_error() -> None:
    facts = {
        "imported": False,
        "error": {
            "type": "OSError",
            "message": "libcudnn.so.9: cannot open shared object file",
            "where": "torch/__init__.py:300 in <module>",
        },
    }
    (problem,) = problems(facts)
    assert problem == (
        "import torch failed: OSError: libcudnn.so.9: cannot open shared object file "
        "(at torch/__init__.py:300 in <module>)"
    )


def test_version_must_equal_the_plan_after_normalisation() -> None:
    assert problems({**GOOD_CUDA, "version": "2.7.1+CU128"}) == ()
    assert problems({**GOOD_CUDA, "version": "2.7.0+cu128"}) == (
        "torch reports version 2.7.0+cu128, but 2.7.1+cu128 was installed",
    )
    assert problems({**GOOD_CUDA, "version": None})[0].startswith("torch reports version None")


@pytest.mark.parametrize(
    ("cuda", "expected_cuda", "expected"),
    [
        ("12.8", "12.8", ()),
        ("12.8.1", "12.8", ()),  # only major.minor names a variant
        ("12.6", "12.8", ("torch was built for CUDA 12.6, expected CUDA 12.8",)),
        (None, "12.8", ("torch has no CUDA support (torch.version.cuda is None), expected CUDA 12.8",)),
        ("12.8", None, ("torch was built for CUDA 12.8, but a CPU build was installed",)),
        (None, None, ()),
    ],
)
def test_cuda_must_match_the_variant(
    cuda: str | None, expected_cuda: str | None, expected: tuple[str, ...]
) -> None:
    assert problems({**GOOD_CUDA, "cuda": cuda}, expected_cuda=expected_cuda, check_gpus=False) == expected


def test_gpu_facts_are_ignored_unless_asked() -> None:
    facts = {**GOOD_CUDA, "cuda_available": False, "gpus": []}
    assert problems(facts, check_gpus=False) == ()


def test_cuda_not_available() -> None:
    (problem,) = problems({**GOOD_CUDA, "cuda_available": False, "device_count": 0, "gpus": []})
    assert "torch.cuda.is_available() is False" in problem


def test_no_devices() -> None:
    assert problems({**GOOD_CUDA, "device_count": 0, "gpus": []}) == (
        "torch sees no GPU (torch.cuda.device_count() is 0)",
    )


def test_gpu_check_that_raised() -> None:
    facts = {
        **GOOD_CUDA,
        "gpu_error": {"type": "RuntimeError", "message": "CUDA error: no kernel image", "where": None},
    }
    assert problems(facts) == ("the GPU check failed: RuntimeError: CUDA error: no kernel image",)


def test_each_gpu_is_judged_on_its_own() -> None:
    gpus = [
        {"index": 0, "name": "A", "max_rel_err": 1e-6},
        {"index": 1, "name": "B", "max_rel_err": MATMUL_TOLERANCE * 10},
        {
            "index": 2,
            "name": "C",
            "error": {"type": "RuntimeError", "message": "no kernel image is available"},
        },
        {"index": 3, "name": "D", "max_rel_err": None},
    ]
    found = problems({**GOOD_CUDA, "device_count": 4, "gpus": gpus})
    assert found == (
        "GPU 1 (B): a small matrix product differs from the CPU's (relative error 0.1)",
        "GPU 2 (C): a small matrix product failed: RuntimeError: no kernel image is available",
        "GPU 3 (D): a small matrix product differs from the CPU's (no result)",
    )


def test_tolerance_separates_rounding_from_garbage() -> None:
    # Correct float32 (even TF32, ~1e-3) passes; an all-zero answer scores 1.0 on this measure.
    assert 1e-3 < MATMUL_TOLERANCE < 0.5


def test_companions() -> None:
    facts = {
        **GOOD_CUDA,
        "companions": {
            "torchvision": {"version": "0.21.0+cu128"},
            "torchaudio": {"error": {"type": "OSError", "message": "undefined symbol", "where": None}},
        },
    }
    found = problems(
        facts, expected_companions={"torchvision": "0.22.1+cu128", "torchaudio": "2.7.1+cu128", "x": "1"}
    )
    assert found == (
        "torchvision reports version 0.21.0+cu128, but 0.22.1+cu128 was installed",
        "import torchaudio failed: OSError: undefined symbol",
        "x was not checked",
    )


def test_parse_output_takes_the_last_json_line() -> None:
    noise = "Warning: something\n{not json\n" + json.dumps({"imported": True, "version": "1"}) + "\n"
    assert parse_output(noise) == {"imported": True, "version": "1"}
    assert parse_output("Segmentation fault\n") is None
    assert parse_output('["a list"]\n') is None


def test_script_is_python_38_syntax_and_stdlib_only() -> None:
    tree = ast.parse(VERIFY_SCRIPT, feature_version=(3, 8))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"json", "math", "os", "sys", "traceback", "torch"}


def test_argv() -> None:
    argv = verify_argv(Path("/e/bin/python"), check_gpus=True, companions=("torchvision",))
    assert argv[:3] == ["/e/bin/python", "-I", "-c"]
    assert argv[4:] == ["--gpus", "--companion", "torchvision"]


def _env_for(python: Path) -> PythonEnv:
    return PythonEnv(python.parent.parent, python, None, EnvKind.VENV, True, (), Platform.LINUX)


def test_script_reports_a_missing_torch_as_one_json_object() -> None:
    # The test interpreter has no torch: the real script must still print its JSON.
    result = verify_build(
        _env_for(Path(sys.executable)),
        expected_version="2.7.1",
        expected_cuda=None,
        check_gpus=True,
        timeout=60,
    )
    assert not result.ok
    assert result.facts["imported"] is False
    (problem,) = result.problems
    assert problem.startswith("import torch failed: ModuleNotFoundError: No module named 'torch'")


def test_a_missing_interpreter_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = verify_build(
        _env_for(tmp_path / "bin" / "python"), expected_version="2.7.1", expected_cuda=None, check_gpus=False
    )
    assert not result.ok
    assert result.problems[0].startswith("could not start")


FAKE_CUDA = """\
# Two pretend GPUs on top of the real CPU torch: "cuda" tensors stay on the CPU; GPU 1 answers
# zeros, as a GPU without kernels for its architecture might. Everything else is real torch.
import torch

_to = torch.Tensor.to


def _to_fake(self, *args, **kwargs):
    if args and isinstance(args[0], torch.device) and args[0].type == "cuda":
        return self.clone() if args[0].index == 0 else self * 0
    return _to(self, *args, **kwargs)


torch.Tensor.to = _to_fake
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 2
torch.cuda.get_device_name = lambda index=0: "Fake GPU %d" % index
torch.cuda.synchronize = lambda device=None: None
"""


@pytest.mark.slow
@pytest.mark.torch
def test_the_gpu_check_runs_for_real_on_torch_and_catches_a_wrong_answer(tmp_path: Path) -> None:
    """The script's GPU part against the real CPU torch, with the CUDA boundary faked in-process."""
    from tests.support import realtorch

    python = realtorch.overlay_venv(
        tmp_path / "fake", files={"td_fakecuda.py": FAKE_CUDA, "td_zzz_fakecuda.pth": "import td_fakecuda\n"}
    )
    result = verify_build(
        _env_for(python), expected_version="2.13.0+cpu", expected_cuda=None, check_gpus=True
    )

    gpus = result.facts["gpus"]
    assert isinstance(gpus, list) and len(gpus) == 2
    assert gpus[0]["name"] == "Fake GPU 0" and gpus[0]["max_rel_err"] < 1e-6
    assert result.problems == (
        "GPU 1 (Fake GPU 1): a small matrix product differs from the CPU's (relative error 0.56)",
    )


@pytest.mark.slow
@pytest.mark.torch
def test_the_real_cpu_torch_passes_and_reports_no_cuda() -> None:
    from tests.support import realtorch

    python = realtorch.ensure_real_torch()
    plain = verify_build(
        _env_for(python), expected_version="2.13.0+cpu", expected_cuda=None, check_gpus=False
    )
    assert plain.ok, plain.problems
    assert plain.facts["cuda"] is None
    gpu = verify_build(_env_for(python), expected_version="2.13.0+cpu", expected_cuda=None, check_gpus=True)
    assert gpu.problems == (
        "torch.cuda.is_available() is False: this build cannot use the GPU with this driver",
    )

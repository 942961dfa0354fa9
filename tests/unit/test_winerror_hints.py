# ruff: noqa: RUF001 - the Russian system texts are Cyrillic on purpose
"""Windows DLL failures get their hint from the error number, never from the English message.

A German or Russian Windows words "The specified module could not be found" (WinError 126) and "The
specified procedure could not be found" (WinError 127) in its own language. The benchmark script
(service/bench/scripts/bench_env.py, loaded here as the file it is) reads the number; the verdict
(service/bench/run.py) decides on it. `ctypes.FormatError` is Windows-only, so it is faked here with
the real German and Russian system texts; the `windows_only` test uses the real one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.envs import install_standins, make_venv
from tests.support.standin import StandIn
from tests.support.windows import windows_only
from torchdoctor.service.bench.run import hints_for, run_bench, verdict

# What FormatMessage says for each number on a German and a Russian Windows.
GERMAN = {
    126: "Das angegebene Modul wurde nicht gefunden.\r\n",
    127: "Die angegebene Prozedur wurde nicht gefunden.\r\n",
    1114: "Eine DLL-Initialisierungsroutine ist fehlgeschlagen.\r\n",
}
RUSSIAN = {
    126: "Не найден указанный модуль.\r\n",
    127: "Не найдена указанная процедура.\r\n",
    1114: "Произошел сбой в программе инициализации библиотеки динамической компоновки (DLL).\r\n",
}


@pytest.fixture(scope="module")
def bench_env() -> Iterator[ModuleType]:
    source = resources.files("torchdoctor.service.bench").joinpath("scripts/bench_env.py")
    with resources.as_file(source) as path:
        spec = importlib.util.spec_from_file_location("bench_env_winerror", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def _dll_load_failed(system: dict[int, str], number: int) -> ImportError:
    # CPython's dynload_win.c: "DLL load failed while importing %s: %s" with FormatMessage's text.
    return ImportError(f"DLL load failed while importing _C: {system[number].strip()}")


@pytest.mark.parametrize("system", [GERMAN, RUSSIAN], ids=["de", "ru"])
@pytest.mark.parametrize("number", [126, 127, 1114])
def test_the_number_is_read_back_from_a_localized_dll_load_failure(
    bench_env: ModuleType, system: dict[int, str], number: int
) -> None:
    exc = _dll_load_failed(system, number)
    assert bench_env.winerror_of(exc, system.__getitem__) == number


def test_an_oserror_carries_its_number(bench_env: ModuleType) -> None:
    class WindowsOSError(OSError):
        winerror = 126  # what Windows' OSError sets; Linux's has no such attribute

    assert bench_env.winerror_of(WindowsOSError("Das angegebene Modul wurde nicht gefunden")) == 126
    assert bench_env.winerror_of(OSError("[WinError 127] Не найдена указанная процедура.")) == 127


def test_the_number_is_found_on_the_exception_an_import_error_came_from(bench_env: ModuleType) -> None:
    try:
        try:
            raise OSError("[WinError 1114] Eine DLL-Initialisierungsroutine ist fehlgeschlagen.")
        except OSError as inner:
            raise ImportError("torch could not be imported") from inner
    except ImportError as outer:
        assert bench_env.winerror_of(outer) == 1114


def test_no_number_where_there_is_none(bench_env: ModuleType) -> None:
    assert bench_env.winerror_of(ImportError("No module named 'torch'"), GERMAN.__getitem__) is None
    assert (
        bench_env.winerror_of(ImportError("DLL load failed while importing _C: ???"), GERMAN.__getitem__)
        is None
    )


def _failed_import(message: str, winerror: int | None) -> dict[str, object]:
    error = {"type": "ImportError", "message": message, "module": None, "winerror": winerror}
    return {
        "device": "cuda:0",
        "expect_gpu": True,
        "steps": [
            {"name": "torch-import", "passed": False, "detail": f"ImportError: {message}", "error": error}
        ],
    }


@pytest.mark.parametrize("system", [GERMAN, RUSSIAN], ids=["de", "ru"])
@pytest.mark.parametrize(
    ("number", "code"), [(126, "vc-redist"), (127, "undefined-symbol"), (1114, "vc-redist")]
)
def test_a_localized_windows_gets_the_same_hint_as_an_english_one(
    system: dict[int, str], number: int, code: str
) -> None:
    message = f"DLL load failed while importing _C: {system[number].strip()}"
    result = verdict(_failed_import(message, number), seconds=1.0)
    assert [h.code for h in result.hints] == [code]


def test_procedure_not_found_is_not_sent_to_the_vc_runtime() -> None:
    # The English text says "DLL load failed" too; the number says which of the two it is.
    english = "DLL load failed while importing _C: The specified procedure could not be found."
    assert [h.code for h in hints_for(english, [127])] == ["undefined-symbol"]
    assert [h.code for h in hints_for("[WinError 127] Die angegebene Prozedur wurde nicht gefunden.")] == [
        "undefined-symbol"
    ]


def test_a_missing_cuda_dll_by_number_is_cuda_libs_missing_in_any_language() -> None:
    text = '[WinError 126] Не найден указанный модуль. Error loading "C:\\e\\torch\\lib\\cublasLt64_12.dll"'
    assert "cuda-libs-missing" not in [h.code for h in hints_for(text)]  # a Windows DLL name, no "lib"
    text = "[WinError 126] Das angegebene Modul wurde nicht gefunden: libcudnn_graph64_9.dll"
    assert [h.code for h in hints_for(text)] == ["vc-redist", "cuda-libs-missing"]


@pytest.mark.slow
def test_a_stand_in_torch_failing_with_a_german_winerror_gets_the_hint(tmp_path: Path) -> None:
    init = (
        "class _WindowsError(OSError):\n"
        "    winerror = 127\n"
        "raise _WindowsError('Die angegebene Prozedur wurde nicht gefunden. "
        'Error loading "C:\\\\e\\\\torch\\\\lib\\\\torch_cuda.dll" or one of its dependencies.\')\n'
    )
    env = make_venv(tmp_path / "env")
    install_standins(env, [StandIn("torch", "2.7.1+cu128", cuda="12.8", files={"torch/__init__.py": init})])
    result = run_bench(env.python, device="cuda", expect_gpu=True)
    assert not result.passed
    assert [h.code for h in result.hints] == ["undefined-symbol"]


@windows_only
def test_the_real_system_texts_map_back_to_their_numbers(bench_env: ModuleType) -> None:
    import ctypes

    for number in (126, 127, 1114):
        text = getattr(ctypes, "FormatError")(number)  # noqa: B009 - absent from Linux's typeshed
        exc = ImportError(f"DLL load failed while importing _C: {text}")
        assert bench_env.winerror_of(exc) == number

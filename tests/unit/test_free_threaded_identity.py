"""A free-threaded build sharing a folder with the default one is an environment of its own in the
tray too: keyed by its interpreter (what `--env` accepts), named "folder (python3.13t)", and its
"Open folder" opens the folder, never the interpreter."""

from __future__ import annotations

from pathlib import Path

from torchdoctor.service.models import EnvKind, EnvReport, PythonEnv, TorchBuild
from torchdoctor.service.monitor.cycle import env_state
from torchdoctor.service.monitor.events import EventKind, diff
from torchdoctor.service.monitor.state import MonitorState, display_name, env_folder

ROOT = Path("/opt/py313")


def _report(python: str) -> EnvReport:
    site = ROOT / "lib" / ("python3.13t" if python.endswith("t") else "python3.13") / "site-packages"
    env = PythonEnv(ROOT, ROOT / "bin" / python, "3.13.1", EnvKind.SYSTEM, True, (site,))
    return EnvReport(env, TorchBuild("2.7.1+cpu", "cpu", None), ())


def test_two_builds_in_one_folder_are_two_tray_environments() -> None:
    default, threaded = env_state(_report("python3.13")), env_state(_report("python3.13t"))
    assert (default.path, threaded.path) == (str(ROOT), str(ROOT / "bin" / "python3.13t"))
    new = MonitorState(checked_at="2026-12-02T00:00:00Z", hardware=None, environments=(default, threaded))
    appeared = [e.subject for e in diff(MonitorState(None, None), new) if e.kind is EventKind.ENV_APPEARED]
    assert appeared == [default.path, threaded.path]  # neither hides the other


def test_names_and_folders_of_a_free_threaded_key() -> None:
    assert display_name(str(ROOT / "bin" / "python3.13t")) == "py313 (python3.13t)"
    assert display_name("/home/ana/proj/.venv/bin/python3.14t") == "proj/.venv (python3.14t)"
    assert env_folder(str(ROOT / "bin" / "python3.13t")) == ROOT
    assert env_folder("/srv/Python313/python3.13t.exe") == Path("/srv/Python313")
    # Folders that only look like interpreters stay folders.
    assert env_folder("/opt/python") == Path("/opt/python")
    assert display_name("/opt/python3.12") == "python3.12"

"""Where an incoming wheel will write, per install scheme, read from its file list alone."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.support.standin import StandIn, build_wheel
from torchdoctor.service.install.survey import incoming, wheel_layout
from torchdoctor.service.models import Platform

SPEC = StandIn(
    "torch",
    "2.8.0+cpu",
    files={
        "torch-2.8.0+cpu.data/purelib/tdpure.py": "",
        "torch-2.8.0+cpu.data/platlib/tdplat/__init__.py": "",
        "torch-2.8.0+cpu.data/scripts/td-tool": "",
        "torch-2.8.0+cpu.data/data/share/td/x.txt": "",
        "torch-2.8.0+cpu.data/headers/td.h": "",
        "torch-2.8.0+cpu.dist-info/entry_points.txt": "[console_scripts]\ntorchrun = torch:main\n",
    },
)


def hostile(wheel: Path) -> None:
    """Members that try to leave their folder; installers reject them, and so must the plan."""
    with zipfile.ZipFile(wheel, "a") as zf:
        for name in ("../../evil.py", "torch-2.8.0+cpu.data/data/../../../etc/passwd",
                     "torch-2.8.0+cpu.data/scripts/sub/../../x", "/abs.py", "C:/x.py"):  # fmt: skip
            zf.writestr(name, "")


def test_each_data_scheme_goes_where_it_installs(tmp_path: Path) -> None:
    wheel = build_wheel(SPEC, tmp_path)
    hostile(wheel)
    layout = wheel_layout(wheel)
    assert {"tdpure.py", "tdplat/__init__.py", "torch/__init__.py"} <= layout.site
    assert not any(".data/" in m or ".." in m for m in layout.site)
    assert layout.tops == {"torch", "tdplat"}
    assert layout.scripts == {"td-tool", "torchrun"}
    assert layout.data == {"share/td/x.txt"}
    assert layout.headers == {"td.h"}


def test_incoming_targets_per_platform(tmp_path: Path) -> None:
    wheel = build_wheel(SPEC, tmp_path / "w")
    root = tmp_path / "env"
    sp = root / "lib" / "python3.12" / "site-packages"
    linux = {
        p.relative_to(root).as_posix()
        for p in incoming(root, [sp], Platform.LINUX, "3.12.4", [wheel]).targets
    }
    assert {"bin/td-tool", "bin/torchrun", "share/td/x.txt", "include/site/python3.12/torch/td.h"} <= linux
    assert "lib/python3.12/site-packages/tdpure.py" in linux
    wsp = root / "Lib" / "site-packages"
    windows = {
        p.relative_to(root).as_posix()
        for p in incoming(root, [wsp], Platform.WINDOWS, "3.12.4", [wheel]).targets
    }
    assert {"Scripts/td-tool", "Scripts/torchrun.exe", "Include/site/python3.12/torch/td.h"} <= windows
    assert all(not p.startswith("..") for p in linux | windows)

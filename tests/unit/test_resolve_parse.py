"""The installers' dry-run output, as uv 0.13 and pip 23 print it (recorded by hand, trimmed)."""

from __future__ import annotations

import json

import pytest

from torchdoctor.service.install.resolve import parse_pip_report, parse_uv_dry_run

UV_DRY_RUN = """Using Python 3.11.7 environment at: v
Resolved 3 packages in 31ms
Would download 3 packages
Would uninstall 2 packages
Would install 3 packages
 - tdhelper==1.0
 + tdhelper==2.0
 + tdnew==1.0
 - torch==2.7.0
 + torch @ file:///tmp/dr/wh/torch-2.8.0-py3-none-any.whl
 ~ Nvidia_CUDNN-cu12==9.7.1.26
"""


def test_uv_dry_run_names_every_project_it_would_touch() -> None:
    assert parse_uv_dry_run(UV_DRY_RUN) == {"tdhelper", "tdnew", "torch", "nvidia-cudnn-cu12"}


def test_uv_dry_run_with_nothing_to_do() -> None:
    assert parse_uv_dry_run("Resolved 2 packages in 3ms\nWould make no changes\n") == set()


def test_pip_report_names_what_it_would_install() -> None:
    report = {
        "version": "1",
        "install": [
            {"metadata": {"name": "torch", "version": "2.8.0"}, "requested": True},
            {"metadata": {"name": "tdnew", "version": "1.0"}},
            {"metadata": {"name": "TD_Helper", "version": "2.0"}},
        ],
    }
    assert parse_pip_report(json.dumps(report)) == {"torch", "tdnew", "td-helper"}


def test_an_unreadable_pip_report_is_an_error_not_an_empty_set() -> None:
    with pytest.raises(ValueError):
        parse_pip_report("WARNING: something\n")

"""Where torchdoctor keeps its files (platformdirs), with environment overrides.

The overrides exist for tests, portable installs and support sessions: each names one folder.
  TORCHDOCTOR_CONFIG_DIR  settings (config.toml) and the user's knowledge override (knowledge.json)
  TORCHDOCTOR_STATE_DIR   state.json, benchmark history, install snapshots
  TORCHDOCTOR_CACHE_DIR   the index cache
  TORCHDOCTOR_LOG_DIR     logs
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "torchdoctor"


def _dir(env_var: str, default: str) -> Path:
    override = os.environ.get(env_var)
    return Path(override) if override else Path(default)


def config_dir() -> Path:
    return _dir("TORCHDOCTOR_CONFIG_DIR", platformdirs.user_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    return _dir("TORCHDOCTOR_STATE_DIR", platformdirs.user_state_dir(APP, appauthor=False))


def cache_dir() -> Path:
    return _dir("TORCHDOCTOR_CACHE_DIR", platformdirs.user_cache_dir(APP, appauthor=False))


def log_dir() -> Path:
    return _dir("TORCHDOCTOR_LOG_DIR", platformdirs.user_log_dir(APP, appauthor=False))


def config_file() -> Path:
    return config_dir() / "config.toml"


def knowledge_override_file() -> Path:
    return config_dir() / "knowledge.json"

# Shared by scripts/run and scripts/test.
# Picks a Python >= 3.11, makes .venv once, and (re)installs torchdoctor into it in editable mode
# whenever pyproject.toml changes (new modules are picked up without a reinstall).
pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "torchdoctor needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  return 1
}

ensure_venv() {
  local extras="${1:-}"
  local py
  cd "$root"
  if [ ! -x .venv/bin/python ]; then
    py="$(pick_python)"
    "$py" -m venv .venv
  fi
  local stamp=".venv/.torchdoctor-installed${extras:+-$extras}"
  local digest
  digest="$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "setting up .venv (log: .venv/pip-install.log)" >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check \
        -e ".${extras:+[$extras]}" >.venv/pip-install.log 2>&1; then
      tail -n 30 .venv/pip-install.log >&2
      echo "installing torchdoctor failed; the whole log is .venv/pip-install.log" >&2
      return 1
    fi
    echo "$digest" >"$stamp"
  fi
}

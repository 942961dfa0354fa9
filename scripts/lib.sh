# Shared by scripts/run and scripts/test.
# Picks a Python >= 3.11, makes .venv once, and (re)installs torchdoctor into it in strict editable
# mode (mypy can only resolve the `torchdoctor.*` namespace mapping through that mode).
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
  # Reinstall when the project definition changed or a module was added (strict mode links files).
  local digest
  digest="$( (cat pyproject.toml; find agent service icons -type f -name '*.py' -o -type f -name '*.json' | sort) | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
      --config-settings editable_mode=strict -e ".${extras:+[$extras]}"
    echo "$digest" >"$stamp"
  fi
}

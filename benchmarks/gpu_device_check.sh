#!/usr/bin/env bash
# The one device check for `torchdoctor bench` on a lent GPU machine.
#
# On the device machine, from the repository root, with the wheels its image lacks carried along:
#   run(command="bash benchmarks/gpu_device_check.sh", carry=[".cache/gpu-wheels"], timeout_s=300)
# Prepare those wheels here first (the device machine reaches no package index; its image has
# torch, nvidia-ml-py, filelock, packaging and psutil, but not platformdirs):
#   .venv/bin/pip download --no-deps -d .cache/gpu-wheels platformdirs
#
# It makes `torchdoctor` importable by the machine's own python3 (the one holding torch), then
#   1. torchdoctor hardware --json                      what the real NVML probe sees
#   2. bench_env.py --device cuda --expect-gpu          the script's raw report (a verdict fixture)
#   3. torchdoctor bench --env PREFIX --json --device cuda   the command's contract output
# and writes everything to $OUT (the device tool brings it back) and to benchmarks/results/,
# each file named <UTC stamp>-<what>. A whole-run deadline keeps it under 4 minutes.
#
# Environment: PYTHON (default python3), OUT (default: a new temporary folder),
# RESULTS_DIR (default benchmarks/results), DEADLINE_S (default 225).

set -uo pipefail # no -e: a failing benchmark is a result to keep, not a reason to stop

cd "$(dirname "$0")/.." || exit 2
py="${PYTHON:-python3}"
out="${OUT:-$(mktemp -d)}"
results="${RESULTS_DIR:-benchmarks/results}"
deadline=$(($(date +%s) + ${DEADLINE_S:-225}))
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
log="$out/log.txt"
mkdir -p "$out" "$results"
: >"$log"

say() { printf '== %s\n' "$*" | tee -a "$log" >&2; }

# Seconds for the next step: its own cap, or what is left of the whole run if that is less.
budget() {
	local left=$((deadline - $(date +%s)))
	if ((left < $1)); then echo $((left > 5 ? left : 5)); else echo "$1"; fi
}

# The benchmark history goes to a throwaway folder, not the machine's user state.
TORCHDOCTOR_STATE_DIR="$(mktemp -d)"
export TORCHDOCTOR_STATE_DIR
unset TORCHDOCTOR_HARDWARE

say "machine"
{
	date -u
	nvidia-smi || true
	"$py" -c 'import sys, torch; print(sys.executable, sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda)'
} >>"$log" 2>&1

say "making torchdoctor importable by $py"
if ! "$py" -c 'import platformdirs' 2>/dev/null; then
	if [[ -d .cache/gpu-wheels ]]; then
		timeout "$(budget 60)" "$py" -m pip install --no-index --no-deps --find-links .cache/gpu-wheels \
			platformdirs >>"$log" 2>&1 || say "could not install platformdirs from .cache/gpu-wheels"
	else
		say "platformdirs is missing and .cache/gpu-wheels was not carried"
	fi
fi
if ! "$py" -c 'import torchdoctor.agent.cli' 2>/dev/null; then
	timeout "$(budget 90)" "$py" -m pip install --no-deps --no-index --no-build-isolation . >>"$log" 2>&1 ||
		say "pip install of the project failed"
fi
if ! "$py" -c 'import torchdoctor.agent.cli' >>"$log" 2>&1; then
	# The same link tree scripts/typecheck uses: the folders under their package names.
	say "falling back to a link tree on PYTHONPATH"
	farm="$(mktemp -d)"
	mkdir -p "$farm/torchdoctor"
	for d in agent service icons; do ln -s "$PWD/$d" "$farm/torchdoctor/$d"; done
	export PYTHONPATH="$farm${PYTHONPATH:+:$PYTHONPATH}"
fi
prefix="$("$py" -c 'import sys; print(sys.prefix)')"

say "1/3 torchdoctor hardware --json"
timeout "$(budget 45)" "$py" -m torchdoctor.agent hardware --json >"$out/hardware.json" 2>>"$log"
say "hardware exit code $?"

say "2/3 bench_env.py --device cuda --expect-gpu (raw report)"
timeout "$(budget 100)" "$py" -I service/bench/scripts/bench_env.py --device cuda --expect-gpu \
	--progress "$out/progress.txt" >"$out/bench-raw.json" 2>>"$log"
say "raw bench exit code $?"
cat "$out/progress.txt" >>"$log" 2>/dev/null
rm -f "$out/progress.txt"

say "3/3 torchdoctor bench --env $prefix --json --device cuda"
cli_timeout="$(budget 100)"
timeout "$((cli_timeout + 10))" "$py" -m torchdoctor.agent bench --env "$prefix" --json --device cuda \
	--timeout "$cli_timeout" >"$out/bench.json" 2>>"$log"
bench_rc=$?
say "bench exit code $bench_rc (0 passed, 1 failed, 2 bad input)"

# The summary table from the JSON just written, without a third run.
"$py" - "$out/bench.json" "$prefix" >"$out/bench.txt" 2>>"$log" <<'PY'
import json, sys
from pathlib import Path
from torchdoctor.agent.commands.bench import render
from torchdoctor.service.bench.run import bench_from_json

with open(sys.argv[1], encoding="utf-8") as fh:
    result = bench_from_json(json.load(fh))
print("\n".join(render(result, env_root=Path(sys.argv[2]), colour=False)))
PY

for f in hardware.json bench-raw.json bench.json bench.txt log.txt; do
	[[ -f "$out/$f" ]] && cp "$out/$f" "$results/$stamp-$f"
done
say "outputs in $out and $results/$stamp-*"
cat "$out/bench.txt" >&2
exit "$bench_rc"

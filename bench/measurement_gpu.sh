#!/usr/bin/env bash
# Device run of the measurement engine (one call): validation tables, the planted GPU crash, the quick suite
# and a sample shard of the gpu suite. Usage, from the repository root on a CUDA machine:
#   OUT=/some/dir bash bench/measurement_gpu.sh
# Pure-Python dependencies missing on the machine (rich and its deps) are installed from .whl/measure into
# a private directory; nothing system-wide changes.
set -u
OUT=${OUT:?set OUT to the output directory}
mkdir -p "$OUT"
DEPS=/tmp/bkbench-devdeps
if ! python3 -c "import rich" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target "$DEPS" .whl/measure/*.whl
fi
export PYTHONPATH="$PWD:$DEPS"
LOG="$OUT/run.log"
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader)"
  T0=$(date +%s)
  timeout "${VALIDATE_S:-230}" python3 bench/measurement_gpu.py --out "$OUT" --parts "${PARTS:-timing,energy,crash}" \
    --energy-cases "${ENERGY_CASES:-4}"
  echo "== validation took $(( $(date +%s) - T0 )) s"
  T1=$(date +%s)
  timeout "${QUICK_S:-90}" python3 -m bkbench run quick --db "$OUT/quick_gpu.db" --no-progress --log-dir /tmp/bkq-logs
  echo "== quick rc=$? took $(( $(date +%s) - T1 )) s"
  T2=$(date +%s)
  timeout "${SHARD_S:-60}" python3 -m bkbench run gpu --shard "${SHARD:-1/8}" --db "$OUT/gpu_shard.db" --no-progress \
    --log-dir /tmp/bkg-logs
  echo "== gpu shard rc=$? took $(( $(date +%s) - T2 )) s"
  tail -c 3000 /tmp/bkq-logs/*.log /tmp/bkg-logs/*.log 2>/dev/null | tail -60
} > "$LOG" 2>&1
tail -c 9000 "$LOG"

#!/usr/bin/env bash
# Issue 25 (and 22) on the H200, one device call: the planted cheaters against the CUDA gate, the clean CUDA gate of
# every BK-core implementation (tuned-config checks included), and a profile of the user's call. From the
# repository root of a device call:
#
#   run(command="bash bench/h200_gate_call.sh", timeout_s=600)
#
# Writes under $OUT: gate_cheaters.json/.log, gate_cuda.json/.log, profile/ (bench/usercall_profile.py),
# inductor/ (the generated code of the compiled module).
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD
T0=$(date +%s)
echo "== cheaters"
timeout 150 python3 -m bkbench gate --device cuda --plugin tests/gate_cheaters.py --impl cheat_stream \
  --impl cheat_memo --impl cheat_mutate --impl cheat_precomputed --quick --seeds 1 \
  --json "$OUT/gate_cheaters.json" > "$OUT/gate_cheaters.log" 2>&1
echo "cheater gate rc=$? ($(( $(date +%s) - T0 )) s)"; tail -25 "$OUT/gate_cheaters.log"
echo "== clean gate"
timeout 280 python3 -m bkbench gate --device cuda --json "$OUT/gate_cuda.json" > "$OUT/gate_cuda.log" 2>&1
echo "clean gate rc=$? ($(( $(date +%s) - T0 )) s)"; tail -30 "$OUT/gate_cuda.log"
echo "== profile"
touch /tmp/marker
mkdir -p "$OUT/profile"; timeout $(( 560 - ($(date +%s) - T0) )) python3 bench/usercall_profile.py --out "$OUT/profile" > "$OUT/profile/run.log" 2>&1 \
  || echo "profile rc=$?"
mkdir -p "$OUT/inductor"
find /tmp/torchinductor_* -name "*.py" -newer /tmp/marker -size -200k 2>/dev/null | head -40 | while read -r f; do
  cp "$f" "$OUT/inductor/"; done
tail -20 "$OUT/profile/run.log"
echo "done in $(( $(date +%s) - T0 )) s"

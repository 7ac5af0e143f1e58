#!/usr/bin/env bash
# Issues 22 and 25 on the H200, one device call: where a compiled training step's host time goes (each piece of the
# step timed alone, torch.profiler CPU tables, inductor's generated code), the stream-order anti-cheat tests and the
# planted cheaters against the CUDA gate, then the user's call against the bare kernel. From the repository root
# of a device call:
#
#   run(command="bash bench/h200_diag_call.sh", timeout_s=600)
#
# Everything lands in $OUT/diag.tgz (the device tool returns at most 8 files).
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/diag_call
mkdir -p "$W/profile" "$W/inductor"
trap 'tar czf "$OUT/diag.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
touch /tmp/marker
echo "== parts"; timeout 150 python3 bench/usercall_profile.py --stages parts --out "$W/profile" 2>&1 | tail -12; el
find /tmp/torchinductor_* -name "*.py" -newer /tmp/marker -size -200k 2>/dev/null | head -20 | while read -r f; do
  cp "$f" "$W/inductor/"; done
echo "== GPU tests"; timeout 100 python3 -m pytest -q -x tests/test_anticheat.py -k "cuda" -p no:cacheprovider \
  > "$W/pytest_gpu.log" 2>&1; echo "pytest rc=$?"; tail -4 "$W/pytest_gpu.log"; el
echo "== cheaters"; timeout 100 python3 -m bkbench gate --device cuda --plugin tests/gate_cheaters.py \
  --impl cheat_stream --impl cheat_memo --impl cheat_mutate --impl cheat_precomputed --quick --seeds 1 \
  --json "$W/gate_cheaters.json" > "$W/gate_cheaters.log" 2>&1; echo "cheater gate rc=$?"
grep -E "^FAIL|gate (FAILED|passed)" "$W/gate_cheaters.log" | cut -c1-230; el
echo "== speed"; timeout $(( 540 - ($(date +%s) - T0) )) python3 bench/triton_fused_h200.py --stages speed \
  --shapes 4096x4096,16384x1024,65536x4096,8x65536 --out "$W/speed.json" 2>&1 | tee "$W/speed.log" \
  | grep -E "^speed|failed|Error"; el

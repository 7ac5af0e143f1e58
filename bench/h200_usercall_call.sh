#!/usr/bin/env bash
# Issues 22 and 25 on the H200, one device call after the eager fast path (bkbench/bound_calls.py): the GPU tests
# of the fast path and of the stream-order check, the user's call against the bare kernel, eager host cost, CUDA
# graphs, torch.compile (two feature forms), the kernels' forward + backward, a profile of the user's call, and
# the planted cheaters against the CUDA gate. From the repository root of a device call:
#
#   run(command="bash bench/h200_usercall_call.sh", timeout_s=600)
#
# Everything lands in $OUT/call.tgz (the device tool returns at most 8 files).
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/usercall_call
mkdir -p "$W/profile"
trap 'tar czf "$OUT/call.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
echo "== timing stages"; timeout 260 python3 bench/triton_fused_h200.py --stages host,graph,compile,bwdk,speed \
  --shapes 4096x1024,4096x4096,65536x4096,8x65536 --out "$W/usercall.json" 2>&1 | tee "$W/usercall.log" \
  | grep -E "^host|^compile|^graph|^bwdk|^speed|failed|Error" ; el
echo "== profile"; timeout 80 python3 bench/usercall_profile.py --out "$W/profile" > "$W/profile/run.log" 2>&1
tail -8 "$W/profile/run.log"; el
echo "== GPU tests"; timeout 120 python3 -m pytest -q -x tests/test_bound_calls.py tests/test_anticheat.py -k "cuda" \
  -p no:cacheprovider > "$W/pytest_gpu.log" 2>&1; echo "pytest rc=$?"; tail -4 "$W/pytest_gpu.log"; el
echo "== cheaters"; timeout 90 python3 -m bkbench gate --device cuda --plugin tests/gate_cheaters.py \
  --impl cheat_stream --impl cheat_memo --impl cheat_mutate --impl cheat_precomputed --quick --seeds 1 \
  --json "$W/gate_cheaters.json" > "$W/gate_cheaters.log" 2>&1; echo "cheater gate rc=$?"
grep -E "^FAIL|gate (FAILED|passed)" "$W/gate_cheaters.log" | cut -c1-230; el

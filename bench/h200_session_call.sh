#!/usr/bin/env bash
# Issues 22 and 25 on the H200, one device call on a committed tree: the user's call against the bare kernel at the
# issue's shapes, eager host cost, CUDA graphs, torch.compile against eager (values, time), GPU time against wall
# time of a training step eager and compiled with the device kernels of each (where a compiled step's time goes),
# the GPU tests of the op, the fast path and the anti-cheat checks, and the planted cheaters against the CUDA gate.
# From the repository root of a device call:
#
#   run(command="bash bench/h200_session_call.sh", timeout_s=600)
#
# Everything lands in $OUT/session.tgz (the device tool returns at most 8 files).
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/session_call
mkdir -p "$W/profile"
trap 'tar czf "$OUT/session.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
git rev-parse HEAD > "$W/git.txt" 2>/dev/null
echo "== cheaters"; timeout 100 python3 -m bkbench gate --device cuda --plugin tests/gate_cheaters.py \
  --impl cheat_stream --impl cheat_memo --impl cheat_mutate --impl cheat_precomputed --quick --seeds 1 \
  --json "$W/gate_cheaters.json" > "$W/gate_cheaters.log" 2>&1; echo "cheater gate rc=$?"
grep -E "^FAIL|gate (FAILED|passed)" "$W/gate_cheaters.log" | cut -c1-230; el
echo "== timing stages"; timeout 250 python3 bench/triton_fused_h200.py --stages host,graph,compile,speed \
  --shapes 4096x1024,4096x4096,16384x1024,65536x4096,8x65536 --out "$W/usercall.json" 2>&1 \
  | tee "$W/usercall.log" | grep -E "^host|^compile|^graph|^speed|failed|Error" ; el
echo "== gpu_step"; timeout 90 python3 bench/usercall_profile.py --stages gpu_step --out "$W/profile" \
  > "$W/profile/gpu_step.log" 2>&1; grep "^==" "$W/profile/gpu_step.log"; el
echo "== GPU tests"; timeout $(( 560 - ($(date +%s) - T0) )) python3 -m pytest -q tests/test_bound_calls.py \
  tests/test_anticheat.py tests/test_op.py -k "cuda or compile or graph" -p no:cacheprovider \
  > "$W/pytest_gpu.log" 2>&1; echo "pytest rc=$?"; tail -4 "$W/pytest_gpu.log"; el

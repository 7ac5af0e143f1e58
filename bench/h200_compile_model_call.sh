#!/usr/bin/env bash
# Issue 22 on the H200, one short device call: torch.compile(fullgraph=True) against eager for a small
# ResNet-BK-style model (bench/compile_model_h200.py: 4 blocks, d = 64, B = 8 and 64 at N = 4096, default and
# reduce-overhead), then the CUDA tests of the bound launches. From the repository root of a device call:
#
#   run(command="bash bench/h200_compile_model_call.sh", timeout_s=420)
#
# Everything lands in $OUT/compile_model.tgz.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/compile_model_call
mkdir -p "$W"
trap 'tar czf "$OUT/compile_model.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
git rev-parse HEAD > "$W/git.txt" 2>/dev/null
git status --short > "$W/git_status.txt" 2>/dev/null
echo "== compile_model"; timeout 240 python3 bench/compile_model_h200.py --out "$W/compile_model.json" 2>&1 \
  | tee "$W/compile_model.log" | grep -E "^compile_model|Error"; el
echo "== GPU tests"; timeout $(( 400 - ($(date +%s) - T0) )) python3 -m pytest -q tests/test_bound_calls.py -k cuda \
  -p no:cacheprovider > "$W/pytest_gpu.log" 2>&1; echo "pytest rc=$?"; tail -3 "$W/pytest_gpu.log"; el

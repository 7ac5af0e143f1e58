#!/usr/bin/env bash
# Issue 22 on the H200, one short device call: torch.compile(fullgraph=True) of a layer calling bk_core against eager
# (default mode and mode="reduce-overhead", two feature forms, B = 4096 and 8 at N = 4096), eager host cost, and
# the GPU tests of the compiled operator. From the repository root of a device call:
#
#   run(command="bash bench/h200_compile_call.sh", timeout_s=330)
#
# Everything lands in $OUT/compile.tgz.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/compile_call
mkdir -p "$W"
trap 'tar czf "$OUT/compile.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
git rev-parse HEAD > "$W/git.txt" 2>/dev/null
echo "== compile, host"; timeout 200 python3 bench/triton_fused_h200.py --stages host,compile \
  --compile-modes default,reduce-overhead --out "$W/compile.json" 2>&1 | tee "$W/compile.log" \
  | grep -E "^host|^compile|failed|Error"; el
echo "== GPU tests"; timeout $(( 290 - ($(date +%s) - T0) )) python3 -m pytest -q tests/test_op.py \
  -k "compile or real_view" -p no:cacheprovider > "$W/pytest_gpu.log" 2>&1; echo "pytest rc=$?"
tail -3 "$W/pytest_gpu.log"; el

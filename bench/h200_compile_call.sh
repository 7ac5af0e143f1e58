#!/usr/bin/env bash
# Issue 22 on the H200, one short device call: eager host cost (wall, host submit and GPU time per call), where a
# training step's host time goes eager against compiled (bench/usercall_profile.py --stages parts),
# torch.compile(fullgraph=True) of a layer calling bk_core against eager (default mode, mode="reduce-overhead", and
# reduce-overhead with the inputs marked static; two feature forms, B = 4096 and 8 at N = 4096), and the GPU tests
# of the compiled operator, CUDA graphs and the bound launches (COMPILE_MODES, GPU_TESTS narrow them). From the
# repository root of a device call:
#
#   run(command="bash bench/h200_compile_call.sh", timeout_s=480)
#
# Everything lands in $OUT/compile.tgz.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/compile_call
mkdir -p "$W/profile"
trap 'tar czf "$OUT/compile.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
git rev-parse HEAD > "$W/git.txt" 2>/dev/null
git status --short > "$W/git_status.txt" 2>/dev/null
echo "== parts"; timeout 90 python3 bench/usercall_profile.py --stages parts --out "$W/profile" \
  > "$W/profile/parts.log" 2>&1; head -12 "$W/profile/parts.log"; el
echo "== compile, host, graph"; timeout 240 python3 bench/triton_fused_h200.py --stages host,graph,compile \
  --compile-modes ${COMPILE_MODES:-default,reduce-overhead,reduce-overhead-static} --out "$W/compile.json" 2>&1 | tee "$W/compile.log" \
  | grep -E "^host|^graph|^compile|failed|Error"; el
echo "== GPU tests"; timeout $(( 460 - ($(date +%s) - T0) )) python3 -m pytest -q tests/test_op.py \
  tests/test_bound_calls.py -k "${GPU_TESTS:-compile or real_view or graph or cuda}" -p no:cacheprovider > "$W/pytest_gpu.log" 2>&1; echo "pytest rc=$?"
tail -3 "$W/pytest_gpu.log"; el

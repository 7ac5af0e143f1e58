#!/usr/bin/env bash
# Issue 22 on the H200, one device call (fifth round): the user's call against the bare kernel, the eager host cost,
# torch.compile of a model, and the operators' CUDA tests. From the repository root of a device call:
#
#   run(command="bash bench/h200_issue22_call.sh", timeout_s=600)
#
# 1. bench/triton_fused_h200.py --stages speed: bk_core(a, b, c, 1j) and bk_core(a, 1.0, 1.0, 1j) against the bare
#    kernel on prepared k, at every shape of SPEED_SHAPES (2^22 .. 2^28 elements and 8 x 65536).
# 2. --stages host: 1000 back-to-back calls at B = 8, N = 4096.
# 3. bench/compile_model_h200.py at 8 x 4096, d = 64: the BK-core and the control mixer, default and
#    reduce-overhead (the Autograd kernel now calls the implementation itself when nothing is below it).
# 4. the CUDA tests of the operators (each within what is left of 570 s).
# Everything lands in $OUT/issue22.tgz; the summary lines are printed.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/issue22
mkdir -p "$W"
trap 'tar czf "$OUT/issue22.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
left() { echo $(( 570 - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
cat .git-sha > "$W/tree.txt" 2>/dev/null || git rev-parse --short HEAD > "$W/tree.txt" 2>/dev/null
echo "== speed"; timeout 220 python3 bench/triton_fused_h200.py --stages speed --out "$W/speed.json" 2>&1 \
  | tee "$W/speed.log" | grep -E "^speed|failed|Error"; el
echo "== host"; timeout 100 python3 bench/triton_fused_h200.py --stages host --out "$W/host.json" 2>&1 \
  | tee "$W/host.log" | grep -E "^host|failed|Error"; el
echo "== compile_model"
timeout "$(( $(left) - 60 ))" python3 bench/compile_model_h200.py --shapes 8x4096x64 --mixers bk,control \
  --out "$W/compile.json" 2>&1 | tee "$W/compile.log" | grep -E "^compile_model|Error"; el
echo "== GPU tests"
for spec in "tests/test_op.py -k cuda_graph_or_with_triton_fused_or_autograd_kernel" \
            "tests/test_bound_calls.py -k workspace_or_operator"; do
  t=$(left); [ "$t" -gt 20 ] || { echo "skipped (time): $spec"; continue; }
  set -- $spec
  f=$1; shift; args=("$@"); [ "${args[0]:-}" = "-k" ] && args=(-k "${args[1]//_or_/ or }")
  log="$W/pytest_$(basename "$f" .py).log"
  timeout "$t" python3 -m pytest -q -p no:cacheprovider "$f" "${args[@]}" > "$log" 2>&1; echo "pytest $spec rc=$?"
  tail -2 "$log"; el
done

#!/usr/bin/env bash
# Issue 22 on the H200, one device call (fourth round): the operators keep their workspace on the device's default
# stream (bkbench.workspace.operator_workspace). From the repository root of a device call:
#
#   run(command="bash bench/h200_op_call.sh", timeout_s=600)
#
# 1. bench/compile_model_h200.py at the host-bound shape 8 x 4096, d = 64 (the row that was 1.25x eager in call 9):
#    with the BK-core and the control mixer, default and reduce-overhead, then the BK-core in the default mode with
#    the workspace allocated in every call (--fresh-workspace: the behaviour before) as the A/B, then the default
#    mode again with torch.profiler tables of an eager and a compiled step (--profile).
# 2. the eager host cost (bench/triton_fused_h200.py --stages host).
# 3. the CUDA tests of the operators: reduce-overhead and CUDA graphs, the direct launch, the workspace rule, the
#    bound calls (each file within what is left of 570 s).
# Everything lands in $OUT/op_call.tgz; the summary lines are printed.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/op_call
mkdir -p "$W"
trap 'tar czf "$OUT/op_call.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
left() { echo $(( 570 - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
git rev-parse --short HEAD 2>/dev/null > "$W/tree.txt" || cat .git-sha > "$W/tree.txt" 2>/dev/null
cm() {  # cm NAME [compile_model args...]
  local name=$1; shift
  timeout 200 python3 bench/compile_model_h200.py --shapes 8x4096x64 --out "$W/compile_$name.json" "$@" 2>&1 \
    | tee "$W/compile_$name.log" | grep -E "^compile_model|Error"; el
}
echo "== compile_model"
cm kept --mixers bk,control
cm fresh --mixers bk --modes default --fresh-workspace
cm profile --mixers bk,control --modes default --profile "$W/profiles"
echo "== host"; timeout 100 python3 bench/triton_fused_h200.py --stages host --out "$W/host.json" 2>&1 \
  | tee "$W/host.log" | grep -E "^host|failed|Error"; el
echo "== GPU tests"
for spec in "tests/test_bound_calls.py -k workspace" \
            "tests/test_op.py -k cuda_graph_or_with_triton_fused_or_direct_or_handed_or_second_derivative" \
            "tests/test_direct_launch.py" "tests/test_bound_calls.py -k cuda"; do
  t=$(left); [ "$t" -gt 20 ] || { echo "skipped (time): $spec"; continue; }
  set -- $spec
  f=$1; shift; args=("$@"); [ "${args[0]:-}" = "-k" ] && args=(-k "${args[1]//_or_/ or }")
  log="$W/pytest_$(basename "$f" .py)_$(echo "${args[*]:-all}" | tr -c 'a-z0-9' '_' | cut -c1-40).log"
  timeout "$t" python3 -m pytest -q -p no:cacheprovider "$f" "${args[@]}" > "$log" 2>&1; echo "pytest $spec rc=$?"
  tail -2 "$log"; el
done

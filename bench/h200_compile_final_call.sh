#!/usr/bin/env bash
# Issue 22 on the H200, one device call (third round): torch.compile(fullgraph=True) of a 4-block ResNet-BK-style
# model against eager, with the BK-core and with a control mixer (bench/compile_model_h200.py --mixers bk,control;
# a host-bound shape 8 x 4096, d = 64, and a GPU-bound one 64 x 16384, d = 256; default and reduce-overhead), the
# eager host cost (bench/triton_fused_h200.py stage host, now with a's leading dims and broadcast couplings, and
# which launch each bound signature takes), CUDA graphs (stage graph), the kernels' forward and exact backward (stage bwdk), then the CUDA tests of CUDA graphs, the
# training step and the backward operator. From the repository root of a device call:
#
#   run(command="bash bench/h200_compile_final_call.sh", timeout_s=560)
#
# CM_SHAPES (default 8x4096x64,64x16384x256) picks compile_model's shapes: CM_SHAPES=8x4096x64 leaves the GPU-bound
# rows out (they take about two minutes) so the test files finish inside one call.
# Everything lands in $OUT/compile_final.tgz.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/compile_final_call
mkdir -p "$W"
trap 'tar czf "$OUT/compile_final.tgz" -C "$W" .' EXIT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
echo "== host, graph"; timeout 170 python3 bench/triton_fused_h200.py --stages host,graph,bwdk --out "$W/host.json" 2>&1 \
  | tee "$W/host.log" | grep -E "^host|^graph|^bwdk|failed|Error"; el
echo "== compile_model"; timeout 300 python3 bench/compile_model_h200.py --mixers bk,control \
  --shapes "${CM_SHAPES:-8x4096x64,64x16384x256}" --out "$W/compile_model.json" 2>&1 | tee "$W/compile_model.log" \
  | grep -E "^compile_model|Error"; el
echo "== GPU tests"; timeout $(( 540 - ($(date +%s) - T0) )) python3 -m pytest -q tests/test_op.py \
  tests/test_direct_launch.py -k "cuda_graph or with_triton_fused or direct or handed or second_derivative" -p no:cacheprovider > "$W/pytest_gpu_op.log" 2>&1; echo "pytest rc=$?"
tail -3 "$W/pytest_gpu_op.log"; el
timeout $(( 540 - ($(date +%s) - T0) )) python3 -m pytest -q tests/test_bound_calls.py -k cuda -p no:cacheprovider \
  > "$W/pytest_gpu_bound.log" 2>&1; echo "pytest rc=$?"; tail -3 "$W/pytest_gpu_bound.log"; el

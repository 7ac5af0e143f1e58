#!/usr/bin/env bash
# Issues 22 and 23 on the H200 in one device call (the tree this script is committed in):
#   1. host cost of the user's call and user-call / bare-kernel speed at 2^22 and 2^24 elements (issue 22);
#   2. the persistent forward grid (FusedConfig.persist) against the table's configs, user-call operands (issue 23);
#   3. torch.compile(fullgraph=True) against eager for the small ResNet-BK model at 8 x 4096 x 64 (issue 22);
#   4. the GPU tests of first-use tuning and the op (issues 22, 23);
#   5. `bkbench tune --jobs 15` for the H200 table: float32 and bf16, per-position and scalar couplings, with the
#      backward kernel, written as a packaged table merged into kernels/bk/data/triton_fused_h200.json (issue 23),
#      then the exhaustive sweep at three shapes for the tuner's within-5 % check, while time is left.
#   run(command="BUDGET_S=560 bash bench/h200_call13.sh", carry=[".whl"], timeout_s=600)
# Stages run in that order, each capped by what is left of BUDGET_S (a short call keeps the first ones whole);
# STAGES (default "host persist compile tests tune") picks which run, e.g. STAGES="host compile tune".
# Everything lands in $OUT/call.tgz, plus the JSON files and the table next to it.
set -u
OUT=${OUT:?set OUT}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/w; mkdir -p "$W"
export BKBENCH_CACHE_DIR=$W/cache TRITON_CACHE_DIR=/tmp/bk-triton-cache
T0=$(date +%s)
STAGES=" ${STAGES:-host persist compile tests tune} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - T0) )); }
cap() { local l=$(( $(left) - 15 )); [ $l -lt 1 ] && l=1; [ $l -lt $1 ] && echo $l || echo $1; }
el() { echo "[$(( $(date +%s) - T0 )) s]"; }
finish() {
  grep -q H200 "$W/device.txt" && python3 -m bkbench tune --from-cache --write-table "$W/triton_fused_h200.json" > "$W/write_table.log" 2>&1
  tar czf "$OUT/call.tgz" -C "$W" .
  cp "$W"/*.json "$OUT/" 2>/dev/null
}
trap finish EXIT
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
fi
cp kernels/bk/data/triton_fused_h200.json "$W/triton_fused_h200.json"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$W/device.txt"
git rev-parse --short HEAD 2>/dev/null | tee "$W/tree.txt"
H200=0; grep -q H200 "$W/device.txt" && H200=1  # elsewhere: no compile stage and no H200 table
want host && echo "== host,speed" && timeout $(cap 100) python3 bench/triton_fused_h200.py --stages host,speed \
  --shapes 4096x1024,4096x4096,16384x1024 --out "$W/host_speed.json" > "$W/host_speed.log" 2>&1; echo "rc=$?"
grep -E "^host|^speed|rror" "$W/host_speed.log" | cut -c1-200; el
want persist && echo "== persist sweep" && timeout $(cap 200) python3 bench/triton_fused_h200.py --stages warm,sweep --sweep-base table \
  --sweep-shapes 4096x4096,16384x1024,16384x4096,1024x16384,256x65536,8x65536 \
  --sweep-configs '[{}, {"persist": 12, "maxnreg": 168}, {"persist": 16, "maxnreg": 128}, {"persist": 8}]' \
  --out "$W/persist.json" > "$W/persist.log" 2>&1; echo "rc=$?"; grep -E "^sweep|^warm|rror" "$W/persist.log" | cut -c1-260; el
[ $H200 = 1 ] && want compile && echo "== compile" && timeout $(cap 150) python3 bench/compile_model_h200.py --shapes 8x4096x64 --mixers bk,control \
  --out "$W/compile.json" > "$W/compile.log" 2>&1; echo "rc=$?"; tail -8 "$W/compile.log"; el
want tests && echo "== GPU tests" && timeout $(cap 70) python3 -m pytest -q -p no:cacheprovider tests/test_first_use_tuning.py \
  tests/test_tune_compile.py > "$W/pytest_gpu.log" 2>&1; echo "rc=$?"; tail -4 "$W/pytest_gpu.log"; el
[ $H200 = 1 ] && want tune && echo "== tune" && timeout $(cap 9999) python3 -m bkbench tune --jobs 15 --dtype float32,bfloat16 \
  --coupling k,scalar --shapes 4096x4096,16384x1024,1024x16384,256x65536,8x65536 --json "$W/tune.json" \
  > "$W/tune.log" 2>&1; echo "rc=$?"; tail -30 "$W/tune.log" | cut -c1-220; el

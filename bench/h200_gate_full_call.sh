#!/usr/bin/env bash
# Issues 21, 23 and 25 on the H200, one device call: the whole CUDA gate (`bkbench gate --device cuda`: every BK-core
# implementation with its anti-cheat checks and triton_fused's tuned-config checks) and the baselines' gate
# (`bkbench gate --baselines`: every SSM and attention baseline, fla-core's included). The implementations are
# independent rows of one gate, so they run as concurrent processes sharing the GPU, one per group below; each
# writes its own JSON. fla-core travels as a wheel (carry .whl). From the repository root of a device call:
#
#   run(command="bash bench/h200_gate_full_call.sh", carry=[".whl"], timeout_s=600)
#   run(command="GATE_SSM_ONLY=1 GATE_LIMIT_S=480 bash bench/h200_gate_full_call.sh", carry=[".whl"])  # SSMs only
#
# Everything lands in $OUT/gates.tgz (the device tool returns at most 8 files).
set -u
OUT=${OUT:?set OUT}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
W=/tmp/gate_call
mkdir -p "$W"
trap 'tar czf "$OUT/gates.tgz" -C "$W" .' EXIT
T0=$(date +%s)
LIMIT=${GATE_LIMIT_S:-540}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/device.txt"
git rev-parse HEAD > "$W/git.txt" 2>/dev/null
gate() {  # gate NAME IMPL... : one process, its log and JSON under $W
  local name=$1; shift
  local impls=()
  for i in "$@"; do impls+=(--impl "$i"); done
  timeout "$LIMIT" python3 -m bkbench gate --device cuda "${impls[@]}" --json "$W/gate_$name.json" \
    > "$W/gate_$name.log" 2>&1
  echo "$name rc=$? after $(( $(date +%s) - T0 )) s" | tee -a "$W/summary.txt"
}
SSM="ssm_fla_delta_rule ssm_fla_gated_deltanet ssm_fla_gla ssm_fla_kda ssm_fla_rwkv7 ssm_fla_ssd ssm_mamba_cuda"
if [ "${GATE_SSM_ONLY:-0}" = 1 ]; then
  # fla-core autotunes per shape: its baselines' batteries did not fit one 540 s process together (2026-12-04),
  # so here each runs in its own process
  for i in $SSM; do gate "$i" "$i" & done
  gate ssm_torch ssm_selective_scan_parallel ssm_selective_scan_ref ssm_ssd_chunked &
else
  gate triton_fused triton_fused &
  gate pivots thomas assoc_scan &
  gate naive naive_loop &
  gate lns lns lns_triton &
  gate lut lut_green lut_green_triton &
  gate ssm ssm_fla_delta_rule ssm_fla_gated_deltanet ssm_fla_gla ssm_fla_kda ssm_fla_rwkv7 ssm_fla_ssd \
    ssm_mamba_cuda ssm_selective_scan_parallel ssm_selective_scan_ref ssm_ssd_chunked &
  gate attention attention_flex_local attention_flex_random attention_naive attention_sdpa_cudnn \
    attention_sdpa_efficient attention_sdpa_flash attention_sdpa_math &
fi
wait
for f in "$W"/gate_*.log; do
  echo "== $(basename "$f")"; grep -E "^FAIL|^IMPORT FAILURE|^gate " "$f" | cut -c1-240 | tail -12
done
echo "done in $(( $(date +%s) - T0 )) s"

#!/usr/bin/env bash
# Issue 21 on the GPU: the CUDA gate of the fla-core delta-rule family and RWKV-7, then the H200 snapshot of the
# BK-core against every SSM and attention baseline, in phases that share one deadline. From the repository root
# of a device call (fla-core's wheel in .whl/, rich's in .whl/measure/ if the image lacks it):
#
#   run(command="BUDGET_S=560 bash bench/h200_snapshot.sh lean", carry=[".whl"], timeout_s=600)
#
# (the one call that fits ~10 minutes of GPU; if it is cut, `lean-runs` in the next call finishes it), then, with
# the returned h200.db copied to results/h200.db and carry=[".whl", "results/h200.db"] (the carry limit is
# 64 MiB in all), the full snapshot: `core`, `attn`, `fill`,
# `fill-fp32`, `energy`, `energy-fp32`, `layers` (about nine more calls of ~10 minutes, estimates below from the
# H100 logs in reports/h100/logs; `gate` is part of `lean`).
#
# Every timed run is `bkbench run --missing` on $OUT/h200.db (seeded from results/h200.db when carried), so a
# phase cut by the deadline loses nothing measured (the runner stores one row per case and marks the run
# interrupted on SIGTERM) and the next call picks up what is missing. Phases, in the order given:
#   lean         = gate-lean + lean-runs. ~5 + 3 + 2 min.
#   gate-lean    the gate (as `gate` below) while `bkbench warm` compiles fla SSD and GLA at d = 256.
#   warm-lean    `bkbench warm` of the fla kernels of group h200-lean alone (no gate: a call after the gate ran).
#   lean-runs    group h200-lean of the baselines suite (BK-core, flash, cuDNN, memory-efficient attention, fla
#                SSD, GLA and the four new ones at (B, d) = (8, 256), N = 256/1024/4096/65536, bf16, fwd and
#                fwd+bwd: 80 cases, 72 that run, ~2 s each), then the energy suite's fill-lean (forward energy at
#                B*N = 2^18, d = 256, N = 4096 and 65536, 9 implementations: 18 cases, ~6.5 s each).
#   gate         `bkbench gate` for each new fla baseline in its own process (all at once; fla's autotune
#                results not kept: tiny shapes under contention), while `bkbench warm` compiles the kernels of
#                their B = 8 cases (d = 256 and 1024, bf16 and fp32). Writes gate_<impl>.json. ~4-6 min.
#   core         B = 8, d in {256, 1024}, N = 2^8..2^16, fwd and fwd+bwd: triton_fused (group bk-widths, fp32;
#                20 cases, H100 run 36: 120 s), the four new fla baselines (baselines-widths bf16,
#                baselines-widths-fp32: Gated DeltaNet fwd) after warming their d = 1024 kernels: 80 cases that
#                run (48 after `lean`), 80 instant skips (no fp32; fla's Hopper refusal). ~8 min.
#   attn         B = 8: every other baseline (attention, fla SSD/GLA, PyTorch SSMs), bf16 and fp32, after
#                warming fla SSD/GLA: 264 cases that run (H100 runs 9, 11, 12: ~12 min in all); 2 calls.
#   fill         filled B (B*N = 2^18), bf16: groups fill-d256, fill-d1024 (every implementation): 232 cases that
#                run, ~5 s each on the H100 (runs 24-25, 29): 2-3 calls.
#   fill-fp32    filled B, fp32 (group fill-fp32): 102 cases that run; ~9 min.
#   energy       energy suite, group fill (bf16; BK-core, flash, chunked SSD, the four new fla baselines):
#                130 cases that run (12 of them in `lean`), ~6.5 s each (H100 run 34): 2 calls.
#   energy-fp32  energy suite, group fill-fp32: 70 cases that run, ~13 s each (H100 run 40): 2 calls.
#   layers       bench/baselines_gpu.py's layer timing (bk, mamba2, attention, gated_deltanet at B = 4,
#                d = 1024, N = 1024 / 4096, bf16, fwd and fwd+bwd). ~1-2 min.
# The log of everything is $OUT/snapshot.log (its tail is printed at the end).
#
# Triton's compiled binaries travel between calls: every call compiles into TRITON_CACHE_DIR=/tmp/bk-triton-cache
# (the same absolute path on every machine: Triton's cache groups name their files by absolute path) and packs it
# to $OUT/triton-cache.tar.gz at the end (dropped, with a line in the log, above 15 MiB: files back are at most
# 16 MiB each). Copy it to results/triton-cache.tar.gz and add that path to carry: the next call unpacks it before
# the warm-up, so fla-core's kernels load instead of compiling (their autotuning still re-times the candidates).
set -u
OUT=${OUT:?set OUT to the output directory}
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-560}
T_END=$(( $(date +%s) + BUDGET_S ))
JOBS=${JOBS:-12}
NEW="ssm_fla_gated_deltanet ssm_fla_delta_rule ssm_fla_kda ssm_fla_rwkv7"
DB="$OUT/h200.db"
LOG="$OUT/snapshot.log"
left() { echo $(( T_END - $(date +%s) )); }
impl_args() { for i in "$@"; do printf -- '--impl %s ' "$i"; done; }

setup() {
  local site=/tmp/bk-site
  mkdir -p "$site"
  ls .whl/fla_core-*.whl >/dev/null 2>&1 || { echo "no .whl/fla_core-*.whl: carry .whl (docs/baselines.md)"; return 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/fla_core-*.whl
  python3 -c "import rich" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --target "$site" .whl/measure/*.whl
  python3 -c "import einops" 2>/dev/null || echo "WARNING: einops missing: fla-core will not import"
  export PYTHONPATH="$PWD:$site"
  export BKBENCH_GIT_SHA=${BKBENCH_GIT_SHA:-$(cat .git-sha 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)}
  [ -f "$DB" ] || { [ -f results/h200.db ] && cp results/h200.db "$DB"; }
  export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/bk-triton-cache}
  mkdir -p "$TRITON_CACHE_DIR"
  if [ -f results/triton-cache.tar.gz ]; then
    tar -C "$TRITON_CACHE_DIR" -xzf results/triton-cache.tar.gz \
      && echo "== Triton cache restored: $(find "$TRITON_CACHE_DIR" -type f | wc -l) files"
  fi
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader)"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  python3 -m bkbench list --kind ssm 2>&1 | grep -E "fla|mamba" | cut -c1-160
}

# run SUITE [bkbench run args...]: a timed --missing run within the deadline (SIGTERM at the deadline)
run() {
  local suite=$1; shift
  local t; t=$(( $(left) - 5 ))
  if [ "$t" -lt 30 ]; then echo "== skipped (deadline): run $suite $*"; return 0; fi
  echo "== $(date -u +%T) run $suite $* (limit ${t} s)"
  timeout -k 20 "$t" python3 -m bkbench run "$suite" --device cuda --db "$DB" --missing --no-progress \
    --log-dir /tmp/bk-worker-logs "$@"
  echo "== run rc=$?"
}

warm() {
  local suite=$1; shift
  local t; t=$(( $(left) - 60 ))
  [ "$t" -gt "${WARM_MAX_S:-100000}" ] && t=$WARM_MAX_S  # WARM_MAX_S caps one warm-up (the rest compiles in the run)
  if [ "$t" -lt 60 ]; then echo "== skipped (deadline): warm $suite $*"; return 0; fi
  echo "== $(date -u +%T) warm $suite $* (limit ${t} s)"
  timeout -k 10 "$t" python3 -m bkbench warm "$suite" --device cuda --db "$DB" --missing --jobs "$JOBS" \
    --timeout "$t" "$@"
  echo "== warm rc=$?"
}

# phase_gate [bkbench warm args...]: the four gates in parallel while warm compiles what the args select
phase_gate() {
  local t; t=$(( $(left) - 10 ))
  echo "== $(date -u +%T) gate (parallel, limit ${t} s) + warm"
  local pids=""
  for impl in $NEW; do
    FLA_CACHE_RESULTS=0 TRITON_CACHE_AUTOTUNING=0 timeout -k 10 "$t" python3 -m bkbench gate --device cuda \
      --impl "$impl" --json "$OUT/gate_$impl.json" > "$OUT/gate_$impl.log" 2>&1 &
    pids="$pids $!"
  done
  JOBS=$(( JOBS > 4 ? JOBS - 4 : 1 )) warm "$@"
  for p in $pids; do wait "$p"; done
  for impl in $NEW; do echo "-- gate $impl"; tail -n 25 "$OUT/gate_$impl.log"; done
}

phase_core() {
  run baselines --group bk-widths --impl triton_fused
  warm baselines --group baselines-widths --group baselines-widths-fp32 $(impl_args $NEW)
  run baselines --group baselines-widths --group baselines-widths-fp32 $(impl_args $NEW)
}

phase_attn() {
  warm baselines --group baselines-widths --group baselines-widths-fp32 --impl ssm_fla_ssd --impl ssm_fla_gla
  run baselines --group baselines-widths --group baselines-widths-fp32
}

phase_fill() {
  warm baselines --group fill-d256 --group fill-d1024 --impl ssm_fla_ssd --impl ssm_fla_gla $(impl_args $NEW)
  run baselines --group fill-d256 --group fill-d1024
}

phase_layers() {
  local t; t=$(( $(left) - 10 ))
  if [ "$t" -lt 40 ]; then echo "== skipped (deadline): layers"; return 0; fi
  mkdir -p "$OUT/layers" && echo '{}' > "$OUT/layers/verdict.json"
  timeout -k 10 "$t" python3 bench/baselines_gpu.py time-group --group layers --out "$OUT/layers" --budget "$(( t - 20 ))"
  echo "== layers rc=$?"
}

# bundle NAME 'PATTERN'...: the files of $OUT matching PATTERN (quoted: expanded inside $OUT) as one $OUT/NAME (files back from a call are at most
# 8: h200.db, snapshot.log, triton-cache.tar.gz, gates.tar.gz with the four gates' JSON and logs, layers.tar.gz)
bundle() {
  local name=$1; shift
  # shellcheck disable=SC2048,SC2086
  local found; found=$(cd "$OUT" && ls -d $* 2>/dev/null)
  [ -n "$found" ] || return 0
  # shellcheck disable=SC2086
  (cd "$OUT" && tar -czf "$name" $found && rm -rf $found) && echo "== bundled into $OUT/$name: $(echo $found)"
}

# pack_triton_cache: $OUT/triton-cache.tar.gz for the next call, or a log line saying why not
pack_triton_cache() {
  [ -d "${TRITON_CACHE_DIR:-}" ] || return 0
  local tgz="$OUT/triton-cache.tar.gz" limit=$(( 15 * 1024 * 1024 ))
  tar -C "$TRITON_CACHE_DIR" -czf "$tgz" . || { rm -f "$tgz"; echo "== Triton cache not packed (tar failed)"; return 0; }
  local size; size=$(stat -c %s "$tgz")
  if [ "$size" -gt "$limit" ]; then
    rm -f "$tgz"; echo "== Triton cache not packed: $size bytes compressed, over $limit"
  else
    echo "== Triton cache packed: $(find "$TRITON_CACHE_DIR" -type f | wc -l) files, $size bytes -> $tgz"
  fi
}

{
  setup || exit_code=2
  for phase in "$@"; do
    [ "${exit_code:-0}" = 0 ] || break
    case "$phase" in
      lean) phase_gate baselines --group h200-lean --impl ssm_fla_ssd --impl ssm_fla_gla
            run baselines --group h200-lean; run energy --group fill-lean ;;
      gate-lean) phase_gate baselines --group h200-lean --impl ssm_fla_ssd --impl ssm_fla_gla ;;
      lean-runs) run baselines --group h200-lean; run energy --group fill-lean ;;
      warm-lean) warm baselines --group h200-lean --impl ssm_fla_ssd --impl ssm_fla_gla $(impl_args $NEW) ;;
      gate) phase_gate baselines --group baselines-widths --group baselines-widths-fp32 $(impl_args $NEW) ;;
      core) phase_core ;;
      attn) phase_attn ;;
      fill) phase_fill ;;
      fill-fp32) run baselines --group fill-fp32 ;;
      energy) warm energy --group fill $(impl_args $NEW); run energy --group fill ;;
      energy-fp32) run energy --group fill-fp32 ;;
      layers) phase_layers ;;
      *) echo "unknown phase $phase (lean gate-lean warm-lean lean-runs gate core attn fill fill-fp32 energy energy-fp32" \
           "layers)"; exit_code=2 ;;
    esac
  done
  echo "== $(date -u +%T) done, $(left) s of the budget left; database $DB"
  bundle gates.tar.gz 'gate_*'
  bundle layers.tar.gz layers
  pack_triton_cache
} > "$LOG" 2>&1
tail -c 11000 "$LOG"
exit "${exit_code:-0}"

#!/usr/bin/env bash
# The checks the first session with a GPU runs as they are (README: "GPU smoke test"), in under 10 minutes:
# device facts, every model family through short runs at 224 px (frozen, fine-tune, hflip, wide, AMP on and off),
# the host-device waits of an epoch, a resume after a kill, determinism, the feature-cache hit, and
# bench.py's GPU tables with the paper catalogue's projection. Prints one summary table; exits non-zero on any
# failure. Needs only a Python with torch, torchvision, numpy, pillow, pyyaml, tqdm and psutil (timm for
# efficientnet_lite0); it uses the checkout's lib/ as is, nothing is installed.
#
#   benchmarks/gpu_smoke.sh                  # on the GPU machine
#   benchmarks/gpu_smoke.sh --device cpu     # a dry run of the same code paths on the CPU (32 px, fewer images)
#
# Options: --device cuda|cpu, --size PX, --no-bench, --bench-models "m1 m2", --work DIR (default: $OUT/gpu-smoke
# when OUT is set, else a temporary folder). Logs and costs.json (the projection's per-row costs) land in DIR.
set -u -o pipefail
cd "$(dirname "$0")/.."

device=cuda size="" bench=1 bench_models="" work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --no-bench) bench=0; shift ;;
    --bench-models) bench_models=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$device" = cpu ]; then
  size=${size:-32}; extra=(--epochs 1 --batch 8 --per-class 10); bench_models=${bench_models:-"baseline"}
  limits=(7200 7200)  # a CPU shared with other work: the limits are there to stop a hang, not to time it
else
  size=${size:-224}; extra=(--epochs 2 --batch 32 --per-class 40)
  limits=(300 420)  # bench, runs: together under 10 minutes with the set-up
fi
work=${work:-${OUT:-$(mktemp -d)}/gpu-smoke}
mkdir -p "$work"

# A Python that has torch: $PYTHON, else the project's venv, else python3 (the GPU machine's image has torch).
py=${PYTHON:-}
for cand in "$py" .venv/bin/python python3; do
  if [ -n "$cand" ] && "$cand" -c "import torch" 2>/dev/null; then py=$cand; break; fi
done
missing=$("$py" -c "
import importlib.util as u
print(' '.join(m for m in ['torch', 'torchvision', 'numpy', 'PIL', 'yaml', 'tqdm', 'psutil'] if u.find_spec(m) is None))")
if [ -n "$missing" ]; then echo "gpu_smoke: $py lacks: $missing" >&2; exit 2; fi
export PYTHONPATH="$PWD/lib:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)

echo "== device facts"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$py" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| GPUs', torch.cuda.device_count())"
nproc

bench_args=()
if [ "$bench" = 1 ]; then
  echo "== bench.py --device $device --projection --quick (log: $work/bench.log)"
  b0=$(date +%s)
  # shellcheck disable=SC2086
  timeout "${limits[0]}" "$py" benchmarks/bench.py --device "$device" --projection --quick --size "$size" \
    --json "$work/costs.json" ${bench_models:+--models $bench_models} >"$work/bench.log" 2>&1
  brc=$?
  tail -n 60 "$work/bench.log"
  bench_args=(--bench-log "$work/bench.log" --bench-rc "$brc" --bench-seconds "$(( $(date +%s) - b0 ))")
fi

echo "== runs (log: $work/smoke.log)"
timeout "${limits[1]}" "$py" benchmarks/gpu_smoke.py --device "$device" --size "$size" --work "$work" "${extra[@]}" \
  "${bench_args[@]}" 2>&1 | tee "$work/smoke.log"
rc=$?
echo "gpu_smoke: exit $rc after $(( $(date +%s) - start )) s (work folder $work)"
exit $rc

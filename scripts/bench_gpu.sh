#!/usr/bin/env bash
# One short GPU session: everything issue 13 asks of a lent accelerator, in one command.
#
#   scripts/bench_gpu.sh [OUT_DIR] [DEADLINE_SECONDS]
#
# 1. the accelerator and the versions;
# 2. determinism: the quick Figure 1 run twice with XLA_FLAGS=--xla_gpu_deterministic_ops=true
#    (what the README tells GPU users to set), summary.json and metrics.jsonl compared byte for byte;
# 3. scripts/bench_gpu.py: Figure 1 steps/s against flax.linen and eager PyTorch on the device, the
#    1..1024-point lr x init x seed sweep program (point-steps/s), and the MLP claim set at its
#    committed scale in the time left (official MNIST from $BN_EXP_DATA_DIR/mnist).
# Every step writes into OUT_DIR as it goes (default results/bench), so a run stopped by its time
# limit keeps what it measured. On a bare machine (as on the lent H100 of results/bench/
# bench_gpu_h100.txt, where ml-collections had to be carried as a wheel):
#   pip install --no-index --no-deps --no-build-isolation --target /tmp/site .
#   PYTHONPATH=/tmp/site:$PWD/scripts PYTHONSAFEPATH=1 BN_EXP_DATA_DIR=<dir holding mnist/> \
#     bash scripts/bench_gpu.sh "$OUT" 400
# Elsewhere `pip install -e .` is enough. BENCH_GPU_ARGS adds arguments to bench_gpu.py (e.g.
# --quick to check the script on a CPU). The claims stage needs the official MNIST.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-results/bench}
DEADLINE=${2:-420}
PY=$(command -v "${PYTHON:-python3}")
case $PY in /*) ;; *) PY=$PWD/$PY ;; esac  # absolute: step 2 runs from /tmp
mkdir -p "$OUT_DIR"
start=$(date +%s)

{
  echo "== device"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  $PY - <<'PY'
import importlib.metadata as md
import jax
print("jax", jax.__version__, jax.devices())
for name in ("jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy", "torch"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
PY

  echo "== determinism: fig1_mnist:quick twice, XLA_FLAGS=--xla_gpu_deterministic_ops=true"
  for i in 1 2; do
    t=$(date +%s%N)
    # From /tmp: `python -m` puts its folder first on sys.path, and the source tree's
    # bn_experiments/ would shadow a --target install (configs/ is packaged from beside it).
    (cd /tmp && XLA_FLAGS=--xla_gpu_deterministic_ops=true "$PY" -m bn_experiments.cli run \
      --config fig1_mnist:quick --workdir "/tmp/bench_gpu_det$i" --progress=false > /dev/null)
    echo "run $i: exit $?, $(( ($(date +%s%N) - t) / 1000000 )) ms (whole process)"
  done
  for f in summary.json metrics.jsonl; do
    if cmp -s "/tmp/bench_gpu_det1/$f" "/tmp/bench_gpu_det2/$f"; then
      echo "$f: byte-identical"
    else
      echo "$f: DIFFERS"
    fi
  done
} 2>&1 | tee "$OUT_DIR/bench_gpu_env.txt"

used=$(( $(date +%s) - start ))
XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 $PY scripts/bench_gpu.py --out-dir "$OUT_DIR" \
  --deadline-seconds $(( DEADLINE - used )) ${BENCH_GPU_ARGS:-} 2>&1 | tee "$OUT_DIR/bench_gpu.log" | grep -v "^WARNING"

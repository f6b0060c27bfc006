#!/usr/bin/env bash
# Muse vs PyTorch on the vae_mlp.py workload (784-400-20 MLP VAE, Adam, batch 128, real MNIST),
# alternating the two ROUNDS times at the same thread count, and printing each pair's ratio
# (Muse ms/step / PyTorch ms/step) and the median ratio.
#
# usage: scripts/bench/vae_vs_pytorch.sh [THREADS=2] [ROUNDS=3]
# needs: a release build (cargo build --release), MUSE_DATA_DIR with mnist/, and the PyTorch
# venv at $PYTHON (default /root/.cache/muse-bench-venv/bin/python).
set -euo pipefail
threads=${1:-2}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-/root/.cache/muse-bench-venv/bin/python}
ref=${BENCH_DIR:-$root/../shared/bench/pytorch}/vae_mlp.py
export MUSE_DATA_DIR=${MUSE_DATA_DIR:-$root/../shared/data}
ratios=()
for r in $(seq "$rounds"); do
  muse=$("$root/target/release/muse" --threads "$threads" bench vae --preset mnist-mlp \
    --steps 200 --warmup 20 2>/dev/null)
  torch=$("$py" "$ref" --threads "$threads" --steps 200 --warmup 20)
  m=$(echo "$muse" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["ms_per_step_median"])')
  t=$(echo "$torch" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["ms_per_step_median"])')
  ratio=$("$py" -c "print(round($m / $t, 3))")
  ratios+=("$ratio")
  echo "round $r: muse $m ms/step, pytorch $t ms/step, ratio $ratio"
done
joined=$(IFS=,; echo "${ratios[*]}")
"$py" -c "import statistics; print('median ratio', statistics.median([$joined]))"

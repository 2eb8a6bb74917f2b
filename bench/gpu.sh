#!/usr/bin/env bash
# GPU benchmark: "paper" presets (32x32x3), batch 64, train-step throughput (tf.function and
# XLA) and peak GPU memory for w32a32 vs w1a1, both models, through bench/speed.py (this tree
# only; its shared harness, bench/harness.py, times the steps and adds the peak GPU memory
# of each mode where TensorFlow sees a GPU). Run from the repository root on a machine with an
# NVIDIA GPU and TensorFlow with CUDA (pip install -e . "tensorflow[and-cuda]").
#
#   bash bench/gpu.sh            # prints a markdown table; the rows also go to bench/gpu_output.json
#   bash bench/gpu.sh --steps=5  # extra arguments go to bench/speed.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "gpu.sh: no NVIDIA GPU visible (nvidia-smi failed)"; exit 2; }
if ! "$PY" -c "import tensorflow" 2>/dev/null; then
  echo "gpu.sh: $PY cannot import tensorflow here; install keras_bdgm with a CUDA build of TensorFlow first (pip install -e . 'tensorflow[and-cuda]')."
  exit 2
fi
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -c '
import keras_bdgm, tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    raise SystemExit("gpu.sh: TensorFlow sees no GPU (CPU-only build?).")
print(f"TensorFlow {tf.__version__} on {tf.config.experimental.get_device_details(gpus[0]).get(\"device_name\")}")
'
TF_CPP_MIN_LOG_LEVEL=2 "$PY" bench/speed.py --configs=paper --precisions=w32a32,w1a1 --modes=compiled,XLA \
  --steps=20 --sample=0 --eval_batches=0 --no_baseline --out=bench/gpu_output "$@"

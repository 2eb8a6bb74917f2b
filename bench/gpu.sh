#!/usr/bin/env bash
# GPU benchmark: "paper" presets (32x32x3), batch 64, train-step throughput and peak GPU
# memory for w32a32 vs w1a1, both models. Run from the repository root on a machine with an
# NVIDIA GPU and TensorFlow with CUDA (pip install -e . "tensorflow[and-cuda]").
#
#   bash bench/gpu.sh            # prints a markdown table
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "gpu.sh: no NVIDIA GPU visible (nvidia-smi failed)"; exit 2; }
if ! "$PY" -c "import tensorflow" 2>/dev/null; then
  echo "gpu.sh: $PY cannot import tensorflow here; install keras_bdgm with a CUDA build of TensorFlow first (pip install -e . 'tensorflow[and-cuda]')."
  exit 2
fi
TF_CPP_MIN_LOG_LEVEL=2 "$PY" - <<'PYEOF'
import time
import keras_bdgm
import numpy as np
import tensorflow as tf
from keras_bdgm import experiment

gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    raise SystemExit("gpu.sh: TensorFlow sees no GPU (CPU-only build?).")
print(f"TensorFlow {tf.__version__} on {tf.config.experimental.get_device_details(gpus[0]).get('device_name')}")
print("| model | precision | train img/s (tf.function) | train img/s (XLA) | peak GPU memory (MiB) |")
print("|---|---|---|---|---|")
x = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
for name in ("resnet_vae", "flowpp"):
    for precision in ("w32a32", "w1a1"):
        cells = []
        for jit in (False, True):
            tf.keras.backend.clear_session()
            tf.config.experimental.reset_memory_stats("GPU:0")
            model = experiment.build_model(name, (32, 32, 3), precision, "paper")
            keras_bdgm.initialize(model, x)
            model.compile(tf.keras.optimizers.Adam(1e-3), jit_compile=jit)
            train = model.make_train_function()
            data = iter(tf.data.Dataset.from_tensors(x).repeat())
            for _ in range(3):
                train(data)
            start = time.perf_counter()
            for _ in range(20):
                logs = train(data)
            float(logs["bits_per_dim"])
            cells.append(f"{20 * 64 / (time.perf_counter() - start):.0f}")
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        print(f"| {name} | {precision} | {cells[0]} | {cells[1]} | {peak:.0f} |", flush=True)
PYEOF

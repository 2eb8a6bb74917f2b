#!/usr/bin/env bash
# The shipped ResNet VAEs: train w32a32, w1a32 and w1a1 side by side on Fashion-MNIST with
# the same step budget, then the importance-weighted bound, curves, samples and the
# packed models. RUNS (default runs/pretrained) holds the run folders.
#
#   bash bench/pretrained_vae.sh train      # the three runs, in the background (about 70 min on 2 cores)
#   bash bench/pretrained_vae.sh finish     # after they end: IWAE, figures, keras_bdgm/pretrained/
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/pretrained}
PY=${PY:-.venv/bin/python}
PRECISIONS="w32a32 w1a32 w1a1"
mkdir -p "$RUNS"
case "${1:-}" in
  train)
    for p in $PRECISIONS; do
      nohup "$PY" examples/train.py --model=resnet_vae --precision=$p --preset=small \
        --overrides='{"width": 32}' --dataset=fashion_mnist --train_split='train[:90%]' \
        --validation_split='train[90%:]' --validation_examples=1000 --validation_every=100 \
        --batch_size=128 --epochs=60 --steps_per_epoch=100 --seed=0 \
        --model_dir="$RUNS/vae_fmnist_$p" > "$RUNS/vae_fmnist_$p.log" 2>&1 &
    done
    echo "training in the background; logs in $RUNS/*.log" ;;
  finish)
    for p in $PRECISIONS; do  # IWAE, K = 1000, on the first 1,000 test images
      "$PY" examples/evaluate.py --model_dir="$RUNS/vae_fmnist_$p" --split=test --eval_examples=1000 \
        --num_samples=1000 --batch_size=100 | tee "$RUNS/vae_fmnist_$p/iwae_k1000.json"
      "$PY" examples/evaluate.py --model_dir="$RUNS/vae_fmnist_$p" --split=test --eval_examples=1000 \
        --num_samples=1 --batch_size=100 | tee "$RUNS/vae_fmnist_$p/elbo_first1000.json"
      "$PY" examples/sample.py --model_dir="$RUNS/vae_fmnist_$p" --num=64 --seed=0 \
        --out="docs/samples_resnet_vae_$p.png"
    done
    "$PY" bench/plot_curves.py --out=docs/curves_resnet_vae.png --json=bench/curves_resnet_vae.json \
      --title="ResNet VAE (width 32) on Fashion-MNIST" \
      $(for p in $PRECISIONS; do echo "$p=$RUNS/vae_fmnist_$p"; done)
    for p in w1a32 w1a1; do  # the packed model and its record (with the bounds above)
      "$PY" - "$RUNS/vae_fmnist_$p" <<'PYEOF'
import json, sys
import keras_bdgm
run = sys.argv[1]
last = lambda name: json.loads(open(f"{run}/{name}").read().strip().splitlines()[-1])["bits_per_dim"]
report = json.load(open(f"{run}/report.json"))
print(keras_bdgm.pretrained.export_run(run, extra={
    "steps": report["epochs"] * report["steps_per_epoch"], "wall_time_s": round(report["wall_time_s"], 1),
    "eval_split": "test", "iwae_k1000_bits_per_dim_first_1000_test": last("iwae_k1000.json"),
    "elbo_bits_per_dim_first_1000_test": last("elbo_first1000.json"),
    "reproduce": "bash bench/pretrained_vae.sh train; bash bench/pretrained_vae.sh finish"}))
PYEOF
    done ;;
  *) echo "usage: $0 train|finish" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The shipped models: train every precision of MODEL side by side on Fashion-MNIST with the
# same step budget and the model's training recipe, then the figures, the samples and the
# packed 1-bit models in keras_bdgm/pretrained/. RUNS (default runs/pretrained) holds the
# run folders.
#
#   bash bench/pretrained.sh resnet_vae train    # w32a32, w1a32, w1a1 (about 65 min on 2 cores)
#   bash bench/pretrained.sh resnet_vae finish   # after they end: IWAE (K=1000), figures, files
#   bash bench/pretrained.sh flowpp train        # w32a32, w1a1 (about 75 min on 2 cores)
#   bash bench/pretrained.sh flowpp finish
#   bash bench/pretrained.sh pixelcnn train      # w1a1 6,000 steps, w32a32 3,000, w1a32 8,000 with the learning
#                                                # rate decaying to 0 (cosine; about 75 min alone, the codec's model)
#   bash bench/pretrained.sh pixelcnn finetune   # after train: w1a1 8,000 more steps, cosine to 0 (about 70 min)
#   bash bench/pretrained.sh pixelcnn finish     # ships the w1a32 and the fine-tuned w1a1 where it exists
#   ONLY="w1a32" bash bench/pretrained.sh pixelcnn train   # only these precisions (train and finish)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-}
RUNS=${RUNS:-runs/pretrained}
PY=${PY:-.venv/bin/python}
# The configuration each width search chose (BENCHMARKS.md), and the budget. The PixelCNN's
# w32a32 run is the binary gap's reference at half the steps (compared on the curves).
BATCH=128; STEPS=100; VALIDATION=1000; W32_EPOCHS=; W1A32_EPOCHS=; W1A32_FLAGS=
case "$MODEL" in
  resnet_vae) PRECISIONS="w32a32 w1a32 w1a1"; OVERRIDES='{"width": 32}'; EPOCHS=60; EVERY=100
              TITLE="ResNet VAE (width 32) on Fashion-MNIST"; PREFIX=vae ;;
  flowpp)     PRECISIONS="w32a32 w1a1"; OVERRIDES='{"width": 16}'; EPOCHS=40; EVERY=250
              TITLE="Flow++ (width 16) on Fashion-MNIST"; PREFIX=flowpp ;;
  pixelcnn)   PRECISIONS="w32a32 w1a32 w1a1"; OVERRIDES='{}'; EPOCHS=30; W32_EPOCHS=15; EVERY=400
              W1A32_EPOCHS=40; W1A32_FLAGS=--learning_rate_decay=cosine  # the codec's model: 8,000 steps, 2e-3 -> 0
              BATCH=64; STEPS=200; VALIDATION=2000
              TITLE="PixelCNN (small) on Fashion-MNIST"; PREFIX=pixelcnn ;;
  *) echo "usage: $0 resnet_vae|flowpp|pixelcnn train|finish" >&2; exit 2 ;;
esac
PRECISIONS=${ONLY:-$PRECISIONS}
run() {  # the run a precision ships: its fine-tuned continuation where one finished (finish)
  if [ "${2:-}" = shipped ] && [ -f "$RUNS/${PREFIX}_fmnist_$1_finetune/report.json" ]; then
    echo "$RUNS/${PREFIX}_fmnist_$1_finetune"; else echo "$RUNS/${PREFIX}_fmnist_$1"; fi
}
mkdir -p "$RUNS"
case "${2:-}" in
  train)
    for p in $PRECISIONS; do
      epochs=$EPOCHS; [ "$p" = w32a32 ] && epochs=${W32_EPOCHS:-$EPOCHS}
      [ "$p" = w1a32 ] && epochs=${W1A32_EPOCHS:-$EPOCHS}
      nohup "$PY" examples/train.py --model=$MODEL --precision=$p --preset=small \
        --overrides="$OVERRIDES" --dataset=fashion_mnist --train_split='train[:90%]' \
        --validation_split='train[90%:]' --validation_examples=$VALIDATION --validation_every=$EVERY \
        --batch_size=$BATCH --epochs=$epochs --steps_per_epoch=$STEPS --seed=0 \
        $([ "$p" = w1a32 ] && echo "$W1A32_FLAGS") --model_dir="$(run $p)" > "$(run $p).log" 2>&1 &
    done
    echo "training in the background; logs in $RUNS/*.log" ;;
  finetune)  # the PixelCNN's w1a1 from its trained weights, Adam 1e-3 decaying to 0 (cosine)
    [ "$MODEL" = pixelcnn ] || { echo "finetune: pixelcnn only" >&2; exit 2; }
    nohup "$PY" examples/train.py --model=$MODEL --precision=w1a1 --preset=small \
      --overrides="$OVERRIDES" --dataset=fashion_mnist --train_split='train[:90%]' \
      --validation_split='train[90%:]' --validation_examples=$VALIDATION --validation_every=$EVERY \
      --batch_size=$BATCH --epochs=40 --steps_per_epoch=$STEPS --seed=0 --learning_rate=1e-3 \
      --learning_rate_decay=cosine --warm_start="$(run w1a1)" \
      --model_dir="$(run w1a1)_finetune" > "$(run w1a1)_finetune.log" 2>&1 &
    echo "fine-tuning in the background; log in $(run w1a1)_finetune.log" ;;
  finish)
    for p in $PRECISIONS; do
      if [ "$MODEL" = resnet_vae ]; then  # IWAE, K = 1000, and the ELBO, on the first 1,000 test images
        "$PY" examples/evaluate.py --model_dir="$(run $p)" --split=test --eval_examples=1000 \
          --num_samples=1000 --eval_batch_size=100 | tee "$(run $p)/iwae_k1000.json"
        "$PY" examples/evaluate.py --model_dir="$(run $p)" --split=test --eval_examples=1000 \
          --num_samples=1 --eval_batch_size=100 | tee "$(run $p)/elbo_first1000.json"
      fi
      "$PY" examples/sample.py --model_dir="$(run $p shipped)" --num=64 --seed=0 --out="docs/samples_${MODEL}_$p.png"
    done
    "$PY" bench/plot_curves.py --out="docs/curves_$MODEL.png" --json="bench/curves_$MODEL.json" \
      --title="$TITLE" $(for p in $PRECISIONS; do echo "$p=$(run $p)"; done)
    for p in $PRECISIONS; do  # the packed 1-bit models and their records
      [ "$p" = w32a32 ] && continue
      "$PY" - "$(run $p shipped)" "$MODEL" <<'PYEOF'
import json, os, sys
import keras_bdgm
run, model = sys.argv[1], sys.argv[2]
report = json.load(open(f"{run}/report.json"))
extra = {"steps": report["epochs"] * report["steps_per_epoch"], "wall_time_s": round(report["wall_time_s"], 1),
         "eval_split": "test", "reproduce": f"bash bench/pretrained.sh {model} train; bash bench/pretrained.sh {model} finish"}
settings = json.load(open(f"{run}/run.json"))
if settings.get("learning_rate_decay") == "cosine" and not run.endswith("_finetune"):
    extra["learning_rate"] = f"Adam {settings['learning_rate']:g} decaying to 0 (cosine) over the run"
if run.endswith("_finetune"):  # steps and time of the run it started from too
    first = json.load(open(f"{run[:-len('_finetune')]}/report.json"))
    extra.update(steps=extra["steps"] + first["epochs"] * first["steps_per_epoch"],
                 wall_time_s=round(report["wall_time_s"] + first["wall_time_s"], 1),
                 fine_tuning="the last 8,000 steps from the trained weights, Adam 1e-3 decaying to 0 (cosine)",
                 reproduce=f"bash bench/pretrained.sh {model} train; bash bench/pretrained.sh {model} finetune; "
                           f"bash bench/pretrained.sh {model} finish")
for key, name in (("iwae_k1000_bits_per_dim_first_1000_test", "iwae_k1000.json"),
                  ("elbo_bits_per_dim_first_1000_test", "elbo_first1000.json")):
    if os.path.exists(f"{run}/{name}"):  # the bounds measured above
        extra[key] = json.loads(open(f"{run}/{name}").read().strip().splitlines()[-1])["bits_per_dim"]
print(keras_bdgm.pretrained.export_run(run, extra=extra))
PYEOF
    done ;;
  *) echo "usage: $0 resnet_vae|flowpp|pixelcnn train|finish" >&2; exit 2 ;;
esac

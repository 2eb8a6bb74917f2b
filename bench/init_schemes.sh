#!/bin/bash
# Init-scheme comparison: small presets, Fashion-MNIST, 600 steps of batch 32, seed 0.
cd /work/main
for model in resnet_vae flowpp; do for precision in w32a32 w1a1; do for scheme in identity reference; do
  dir=/work/runs/init/${model}_${precision}_${scheme}
  TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 nohup .venv/bin/python examples/train.py \
    --model=$model --precision=$precision --preset=small --dataset=fashion_mnist \
    --epochs=6 --steps_per_epoch=100 --batch_size=32 --seed=0 \
    --train_split='train[:90%]' --validation_split='train[90%:]' --validation_examples=1000 --validation_every=100 \
    --eval_examples=1000 --overrides="{\"init_scheme\": \"$scheme\"}" --model_dir=$dir > $dir.log 2>&1 &
done; done; done

"""Test bits/dim of both models in three precisions on Fashion-MNIST, one step budget for all.

    python bench/quality.py --steps_per_epoch=100 --epochs=6 --out=bench/quality_output

Trains the six "small" models (Flow++ and ResNet VAE x w32a32, w1a32, w1a1) with the same
number of steps and batch size, evaluates test bits/dim on the whole test split, the
ResNet VAE's importance-weighted bound (K=1000) on the first --iwae_examples test images,
and prints a markdown table with the relative cost of binarizing beside the paper's
(bench/harness.py's `write_results`: the rows also go to <--out>.json). Everything printed
also goes to <--out>.txt.
"""

import argparse
import json
import os
import sys
import time

import harness

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
from keras_bdgm import datasets
from keras_bdgm.runs import experiment

PAPER_GAP = {  # Bird et al. (2021), Table 1, CIFAR-10: relative bits/dim increase over w32a32
    "flowpp": {"w1a32": 0.025, "w1a1": 0.069},
    "resnet_vae": {"w1a32": 0.043, "w1a1": 0.081},
}
PRECISIONS = ("w32a32", "w1a32", "w1a1")


class Tee:
    def __init__(self, path):
        self.file = open(path, "w")

    def __call__(self, *args):
        line = " ".join(str(a) for a in args)
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps_per_epoch", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--iwae_examples", type=int, default=100)
    parser.add_argument("--iwae_samples", type=int, default=1000)
    parser.add_argument("--eval_examples", type=int, default=None, help="default: the whole test split")
    parser.add_argument("--models", default="flowpp,resnet_vae")
    parser.add_argument("--run_dir", default="runs/quality")
    parser.add_argument("--out", default="bench/quality_output", help="output prefix (<out>.txt, <out>.json)")
    args = parser.parse_args()
    out = harness.output_prefix(args.out)
    log = Tee(out + ".txt")
    log(f"# bench/quality.py {' '.join(sys.argv[1:])}")
    log(f"# started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; step budget per run: {args.epochs} x "
        f"{args.steps_per_epoch} steps of batch {args.batch_size}")
    results = {}
    for model in args.models.split(","):
        for precision in PRECISIONS:
            model_dir = os.path.join(args.run_dir, f"{model}_{precision}")
            config = experiment.TrainConfig(
                model=model, precision=precision, preset="small", dataset="fashion_mnist",
                epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                model_dir=model_dir, eval_examples=args.eval_examples, overwrite=True, verbose=2,
            )
            report = experiment.train(config)
            row = {k: report[k] for k in ("test_bits_per_dim", "parameters", "binary_share", "packed_bytes",
                                           "float32_bytes", "images_per_second", "wall_time_s")}
            row["train_bits_per_dim"] = report["train_bits_per_dim"]
            if model == "resnet_vae" and args.iwae_samples > 1:
                start = time.time()
                ds = datasets.load("fashion_mnist", "test", batch_size=10, shuffle=False, limit=args.iwae_examples)
                trained = experiment.load_model(model_dir)
                evaluate = harness.evaluate_function()
                row["iwae_bits_per_dim"] = evaluate(trained, ds, num_samples=args.iwae_samples)
                row["elbo_bits_per_dim_same_images"] = evaluate(trained, ds, num_samples=1)
                row["iwae_seconds"] = time.time() - start
            results[(model, precision)] = row
            log(f"RESULT {model} {precision} {json.dumps(row)}")

    log("")
    iwae_column = f"IWAE K={args.iwae_samples} bits/dim (ELBO, same {args.iwae_examples} images)"
    rows = []
    for (model, precision), row in results.items():
        base = results.get((model, "w32a32"), {}).get("test_bits_per_dim")
        iwae = None
        if "iwae_bits_per_dim" in row:
            iwae = f"{row['iwae_bits_per_dim']:.4f} ({row['elbo_bits_per_dim_same_images']:.4f})"
        rows.append({
            "model": model, "precision": precision, "test bits/dim": row["test_bits_per_dim"],
            "gap vs w32a32": None if precision == "w32a32" or base is None else row["test_bits_per_dim"] / base - 1,
            "paper's gap (CIFAR-10)": PAPER_GAP[model].get(precision), iwae_column: iwae,
            "params": row["parameters"], "binary": row["binary_share"], "packed MB": row["packed_bytes"] / 1e6,
            "float32 MB": row["float32_bytes"] / 1e6, "train images/s": row["images_per_second"], "run": row,
        })
    columns = [k for k in rows[0] if k != "run"] if rows else None
    text = harness.write_results(rows, out, columns=columns, formats={
        "test bits/dim": "{:.4f}", "gap vs w32a32": "{:+.1%}", "paper's gap (CIFAR-10)": "{:+.1%}", "binary": "{:.1%}",
        "packed MB": "{:.3f}", "float32 MB": "{:.3f}", "train images/s": "{:.0f}"}, meta=vars(args))
    log.file.write(text + "\n")
    log(f"# finished {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


if __name__ == "__main__":
    main()

"""Candidate models at equal wall time: validation bits/dim against minutes of training.

    python bench/plot_probe.py --out=docs/probe_models.png --minutes=20 \
        "PixelCNN w1a1=runs/pretrained/pixelcnn_fmnist_w1a1" \
        "ResNet VAE w1a1=bench/curves_resnet_vae.json:w1a1@keras_bdgm/pretrained/resnet_vae_w1a1_fashion_mnist.json" \
        "Flow++ w1a1=bench/curves_flowpp.json:w1a1@keras_bdgm/pretrained/flowpp_w1a1_fashion_mnist.json"

Each LABEL=SOURCE is a run folder of examples/train.py (its validation_curve.json and
report.json), or CURVES.json:KEY@RECORD.json (a curve written by bench/plot_curves.py --json
and the shipped model's record). Steps become minutes at the run's mean pace,
wall_time_s / steps (validations included): the curves are compared at equal wall time on
the machine each run had, not at equal steps. Prints a table with each curve's bits/dim at
--minutes (linear between validations) and at its end, and draws the curves into --out.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_source(source):
    """(steps, val bits/dim, seconds per step) of a run folder or CURVES.json:KEY@RECORD.json."""
    if os.path.isdir(source):
        with open(os.path.join(source, "validation_curve.json")) as f:
            points = json.load(f)
        with open(os.path.join(source, "report.json")) as f:
            report = json.load(f)
        steps = [p["step"] for p in points]
        values = [p["val_bits_per_dim"] for p in points]
        return steps, values, report["wall_time_s"] / (report["epochs"] * report["steps_per_epoch"])
    curves, _, record = source.partition("@")
    path, _, key = curves.rpartition(":")
    with open(path) as f:
        curve = json.load(f)[key]
    with open(record) as f:
        record = json.load(f)
    return curve["steps"], curve["val_bits_per_dim"], record["wall_time_s"] / record["steps"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="LABEL=RUN_DIR or LABEL=CURVES.json:KEY@RECORD.json")
    parser.add_argument("--out", required=True, help="PNG path.")
    parser.add_argument("--minutes", type=float, default=20.0, help="The probe's wall time.")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    print(f"| model | s/step | val bits/dim at {args.minutes:g} min | minutes in all | val bits/dim at the end |")
    print("|---|---|---|---|---|")
    for spec in args.sources:
        label, _, source = spec.partition("=")
        if not source:
            parser.error(f"{spec!r} is not LABEL=SOURCE")
        steps, values, pace = read_source(source)
        minutes = np.asarray(steps) * pace / 60.0
        at = float(np.interp(args.minutes, minutes, values)) if minutes[0] <= args.minutes else float("nan")
        print(f"| {label} | {pace:.3f} | {at:.3f} | {minutes[-1]:.0f} | {values[-1]:.3f} |")
        ax.plot(minutes, values, marker=".", label=label)
    ax.axvline(args.minutes, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("minutes of training (steps x the run's mean s/step)")
    ax.set_ylabel("validation bits/dim")
    ax.set_title("Candidate models on Fashion-MNIST at equal wall time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

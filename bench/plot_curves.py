"""Plots validation bits/dim against training step for several runs into one PNG.

    python bench/plot_curves.py --out=docs/curves.png --title="ResNet VAE" \
        w32a32=runs/vae_w32a32 w1a32=runs/vae_w1a32 w1a1=runs/vae_w1a1

Each LABEL=RUN_DIR reads RUN_DIR/validation_curve.json (written by examples/train.py with
--validation_every). Prints the curves as a table (and --json writes them).
"""

import argparse
import json
import os

try:
    import matplotlib
except ModuleNotFoundError as err:  # an extra, not a dependency of the package
    raise SystemExit("plot_curves.py needs matplotlib: pip install -e '.[bench]'") from err

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(run_dir):
    with open(os.path.join(run_dir, "validation_curve.json")) as f:
        points = json.load(f)
    return [p["step"] for p in points], [p["val_bits_per_dim"] for p in points]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--out", required=True, help="PNG path.")
    parser.add_argument("--title", default="")
    parser.add_argument("--json", default=None, help="Also write the curves as JSON here.")
    args = parser.parse_args()
    curves = {}
    for spec in args.runs:
        label, _, run_dir = spec.partition("=")
        if not run_dir:
            parser.error(f"{spec!r} is not LABEL=RUN_DIR")
        curves[label] = read_curve(run_dir)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation bits/dim")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out)
    for label, (steps, values) in curves.items():
        print(label, " ".join(f"{s}:{v:.4f}" for s, v in zip(steps, values)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {"steps": s, "val_bits_per_dim": v} for k, (s, v) in curves.items()}, f, indent=1)


if __name__ == "__main__":
    main()

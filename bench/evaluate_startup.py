"""Start-up of `examples/evaluate.py`: seconds from starting the script until it has printed
its result for one evaluation batch of a shipped model, for a baseline commit and for this
working tree, measured alternately (each run a fresh process; medians of --repeats).

    python bench/evaluate_startup.py                                  # b690ea0 vs this tree
    python bench/evaluate_startup.py --models=flowpp/w1a1 --repeats=5 --baseline=7971f6d

Each tree runs its own examples/evaluate.py with its own keras_bdgm (`git archive` of the
commit's keras_bdgm/ and examples/) on --eval_examples test images (default 16, one batch),
so the seconds are the script's fixed cost: imports, reading the dataset, loading the
model, tracing and running the compiled evaluation once. The table goes to stdout and
<--out>.json.
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(commit):
    """keras_bdgm/ and examples/ of `commit` in a new temporary folder."""
    dest = tempfile.mkdtemp(prefix=f"keras_bdgm_{commit}_")
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", commit, "keras_bdgm", "examples"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def time_evaluate(tree, model, eval_examples):
    """(seconds, the script's bits/dim) of one `evaluate.py --pretrained=model` run in `tree`."""
    env = {**os.environ, "PYTHONPATH": tree, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, os.path.join(tree, "examples", "evaluate.py"), f"--pretrained={model}",
               f"--eval_examples={eval_examples}", "--num_samples=1", "--noprogress"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed in {tree}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, result.get("bits_per_dim", result.get("test_bits_per_dim"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="flowpp/w1a1,resnet_vae/w1a1")
    parser.add_argument("--baseline", default="b690ea0")
    parser.add_argument("--eval_examples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/evaluate_startup")
    args = parser.parse_args()
    trees = {"before": export(args.baseline), "after": REPO}
    rows = []
    for model in args.models.split(","):
        seconds = {side: [] for side in trees}
        figures = {}
        for repeat in range(args.repeats):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for side in order:
                s, bpd = time_evaluate(trees[side], model, args.eval_examples)
                seconds[side].append(s)
                figures[side] = bpd
                print(f"{model} {side} run {repeat + 1}: {s:.1f} s ({bpd} bits/dim)", file=sys.stderr)
        rows.append({"model": model, **{f"{side} s": statistics.median(v) for side, v in seconds.items()},
                     "runs": seconds, "bits/dim": figures})
    print(f"| model | {args.baseline} | this tree | after/before |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['before s']:.1f} s | {row['after s']:.1f} s | {row['after s'] / row['before s']:.2f}x |")
    with open(args.out + ".json", "w") as f:
        json.dump({"baseline": args.baseline, "eval_examples": args.eval_examples, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

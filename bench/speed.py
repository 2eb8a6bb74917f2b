"""Speed before/after from one run: time to first step and first sample, train img/s (eager,
compiled, XLA, default), sample img/s and eval img/s of each configuration, for a baseline
version of keras_bdgm (default commit b690ea0, the baseline of the start-up issue; f97c368
was the speed issue's) and for this working tree, measured alternately by the same code
(bench/harness.py), each measurement in a fresh process.

    python bench/speed.py --start_up=only --precisions=w1a1  # time to first step / sample only

    python bench/speed.py                                   # every configuration and precision
    python bench/speed.py --configs=issue --precisions=w1a1
    python bench/speed.py --baseline_tree=/tmp/b690ea0      # a tree exported already
    python bench/speed.py --no_baseline                     # this tree only
    python bench/speed.py --configs=small --models=flowpp --precisions=w1a1 \\
        --steps=1 --eager_steps=1 --sample=2 --sample_repeats=1 --eval_batches=1 --out=/tmp/speed_smoke   # smoke run

Configurations (`CONFIGS`), random uint8 images (speed does not depend on the content):
  issue  32x32x3, batch 16 (issue_dropout: Flow++ the same with dropout 0.2, at w32a32 the
         paper's rate). Flow++: the "small" preset with width 32, 2 blocks, 4 mixture
         components, couplings (4, 2, 3), dequantizer width 32 with 1 block, context network
         width 32 with 3 blocks. ResNet VAE: the "small" preset with width 64 (4 latent
         layers, 1 processing block).
  small  the "small" presets at 28x28x1, batch 64 (small_dropout: Flow++ with dropout 0.2).
  paper  the "paper" presets at 32x32x3, batch 64 (what bench/gpu.sh runs; slow on CPUs).

Time to first step (`--start_up`, default on): seconds from starting a fresh Python until
a fresh model's first train step has finished (imports, build, data-dependent init,
`compile` as a short `train` run does it, with the optimizer `train` uses, one step;
`--start_up_mode=run`: as a long run compiles it, XLA for a model with an
`xla_break_even_steps`), first with an
empty persistent XLA cache (`KERAS_BDGM_XLA_CACHE`, a new temporary folder) and then again
with the cache that run filled; and until the first `sample(n)` call (n = the first
--sample size) has returned. Each row says how the seconds split: imports, build + init,
the call itself.

For each configuration and precision, per tree and repeat (in alternating order: before,
after, then after, before, ...), one child process builds the model and times
`model.sample(n)` (n = each of --sample, default 16 and 64, --sample_repeats calls each
after one untimed call; with each version's defaults, so compiled where that version
compiles it) and `evaluate_bits_per_dim` (K = 1, --eval_batches batches, the fastest of 3
passes, tf.data autotuning off), then one more child process per train mode
(`--shared_process`: the same process for all, as before; a mode timed after others there
ran up to 16% slower) times --steps steps (eager: --eager_steps) of a fresh model after
untimed warm-up steps (tracing, XLA compilation). Each mode but "default" passes
jit_compile explicitly, so a model's XLA default does not change what "compiled" measures;
"default" compiles as a user's `model.compile(optimizer)` does (the "default train mode" row
says which that was), "run" as a long `train` run does (its optimizer, and XLA for a model
whose `xla_break_even_steps` the run reaches). With --repeats > 1 the table has medians;
the JSON keeps every run. The "trainable parameters" row shows where the versions build
different models for one configuration (Flow++'s context network has had 3x3 gate convs
since 0442fc2; 1x1 at f97c368), so a before/after there includes that change too. The table
goes to stdout and, with every number, to <--out>.json; progress goes to stderr.
"""

import argparse
import os
import tempfile
import platform
import shutil
import subprocess
import sys

import harness

BASELINE = "b690ea0"  # the start-up and train-step issue's baseline (f97c368: the speed issue's)
ISSUE_FLOWPP = {"width": 32, "num_blocks": 2, "num_components": 4, "couplings": [4, 2, 3],
                "dequant_width": 32, "dequant_blocks": 1, "context_width": 32, "context_blocks": 3}
# config -> [(model, image shape, preset, batch, preset overrides)]
CONFIGS = {
    "issue": [("flowpp", (32, 32, 3), "small", 16, ISSUE_FLOWPP),
              ("resnet_vae", (32, 32, 3), "small", 16, {"width": 64, "latent_layers": 4, "processing_blocks": 1})],
    "small": [("flowpp", (28, 28, 1), "small", 64, {}), ("resnet_vae", (28, 28, 1), "small", 64, {})],
    "issue_dropout": [("flowpp", (32, 32, 3), "small", 16, {**ISSUE_FLOWPP, "dropout": 0.2})],
    "small_dropout": [("flowpp", (28, 28, 1), "small", 64, {"dropout": 0.2})],
    "paper": [("flowpp", (32, 32, 3), "paper", 64, {}), ("resnet_vae", (32, 32, 3), "paper", 64, {})],
}
PRECISIONS = ("w32a32", "w1a32", "w1a1")


def _tree_label(path):
    """`git describe`-like label of a working tree (commit, and whether it has changes)."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", "keras_bdgm"],
                               check=True, capture_output=True, text=True).stdout.strip()
        return f"{head} + uncommitted changes to keras_bdgm/" if dirty else head
    except (OSError, subprocess.CalledProcessError):
        return "not a git tree"


def _metrics(results, modes):
    keys = [f"train img/s {m}" for m in modes] + ["default train mode", "sample img/s"]
    keys += sorted({k for r in results for k in r if k.startswith("sample img/s n=")},
                   key=lambda k: int(k.split("=")[1]))
    keys.append("eval img/s")
    for key in START_UP_KEYS:
        keys += [key, f"{key}: imports, build+init, call"]
    keys.append("first step: compiled with XLA")
    keys += [k for r in results for k in r if k.startswith("peak GPU MiB") and k not in keys]
    keys.append("trainable parameters")  # the versions' models may differ (see the module docstring)
    return [k for k in dict.fromkeys(keys) if any(k in r for r in results)]


def measurement_parts(spec, process_per_mode=True):
    """The specs of one measurement's child processes: one for sampling and evaluation, one per
    train mode (a mode timed after others in the same process ran up to 16% slower), or just
    `spec` with process_per_mode=False."""
    if not process_per_mode:
        return [spec]
    parts = [{**spec, "modes": []}] if spec["sample"] or spec["eval_batches"] else []
    return parts + [{**spec, "modes": [mode], "sample": [], "eval_batches": 0} for mode in spec["modes"]]


def measure_parts(spec, tree, timeout, process_per_mode=True):
    """`harness.measure(spec)` in `tree`, one child process per `measurement_parts` part, merged
    (a failed part's error under "error")."""
    merged = {}
    for part in measurement_parts(spec, process_per_mode):
        result = harness.measure_in_tree(part, tree, timeout=timeout)
        if "error" in result:
            merged.setdefault("error", result["error"])
        merged.update({k: v for k, v in result.items() if k != "error"})
    return merged


START_UP_KEYS = ("first step s (cache empty)", "first step s (cache warm)", "first sample s")


def measure_start_up(spec, tree, timeout):
    """Time to first step (a fresh process, a new empty XLA cache, then again with the cache
    it filled) and to the first sample call (a fresh process): `harness.measure_start_up`."""
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {"KERAS_BDGM_XLA_CACHE": cache}
        parts = [("first step s (cache empty)", "first step"), ("first step s (cache warm)", "first step")]
        if spec["sample"]:  # --sample=0: no sampling, so no first sample either
            parts.append(("first sample s", "first sample"))
        for key, part in parts:
            got = harness.measure_in_tree({**spec, "start_up": part}, tree, timeout=timeout, extra_env=env)
            if "error" in got:
                result[key] = f"fails: {got['error']}"
                continue
            result[key] = got[f"{part} s"]
            if key != "first step s (cache warm)":
                result[f"{part}: compiled with XLA"] = got[f"{part}: jit_compile"]
            result[f"{key}: imports, build+init, call"] = " + ".join(
                f"{got[f'{part}: {k}']:.1f}" for k in ("imports s", "build and init s", "call s"))
    return result


def _ratio(before, after):
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (before, after))
    if numbers and before > 0:
        return after / before
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="issue,small", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--models", default="flowpp,resnet_vae")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--modes", default="eager,compiled,XLA,default",
                        help="train modes: eager, compiled, XLA, default (what compile picks untold), run (as a long train run)")
    parser.add_argument("--steps", type=int, default=10, help="timed train steps per compiled mode")
    parser.add_argument("--eager_steps", type=int, default=2, help="timed train steps in eager mode")
    parser.add_argument("--sample", default="16,64", help="images per timed sample call, one or more sizes "
                        "(comma-separated; 0: no sampling)")
    parser.add_argument("--sample_repeats", type=int, default=5, help="timed sample calls per size")
    parser.add_argument("--eval_batches", type=int, default=4, help="batches evaluated (0: no evaluation)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per tree (alternating; medians)")
    parser.add_argument("--baseline", default=BASELINE, help="commit to export as the 'before' tree")
    parser.add_argument("--baseline_tree", default=None,
                        help="folder holding the 'before' keras_bdgm/ (instead of exporting --baseline)")
    parser.add_argument("--no_baseline", action="store_true", help="measure this tree only")
    parser.add_argument("--keep_baseline", action="store_true", help="keep the exported tree")
    parser.add_argument("--shared_process", action="store_true",
                        help="time every train mode in the process that samples and evaluates (default: "
                             "a fresh process per mode)")
    parser.add_argument("--start_up", choices=["on", "off", "only"], default="on",
                        help="time to first step and first sample (fresh processes; 'only': nothing else)")
    parser.add_argument("--start_up_mode", choices=["default", "run"], default="default",
                        help="first step compiled as `compile(optimizer)` does (default) or as a long train run (run)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per child process")
    parser.add_argument("--out", default="bench/speed_output", help="output prefix (writes <out>.json)")
    args = parser.parse_args()

    configs = args.configs.split(",")
    sample_sizes = [int(n) for n in args.sample.split(",") if int(n) > 0]
    for name in configs:
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; expected some of: {', '.join(CONFIGS)}")
    models, modes = args.models.split(","), [harness.mode_name(m) for m in args.modes.split(",")]
    trees, exported = {"after": str(harness.REPO)}, None
    labels = {"after": f"{harness.REPO} ({_tree_label(harness.REPO)})"}
    if not args.no_baseline:
        if args.baseline_tree:
            trees["before"] = os.path.abspath(args.baseline_tree)
            labels["before"] = trees["before"]
        else:
            exported, commit = harness.export_commit(args.baseline)
            trees["before"] = exported
            labels["before"] = f"commit {commit} (git archive into {exported})"
        if not os.path.isdir(os.path.join(trees["before"], "keras_bdgm")):
            parser.error(f"{trees['before']} holds no keras_bdgm/ folder")
    sides = ["before", "after"] if "before" in trees else ["after"]
    for side in sides:
        print(f"{side}: {labels[side]}", file=sys.stderr)

    setups = [(config, model, shape, preset, batch, overrides, precision)
              for config in configs for model, shape, preset, batch, overrides in CONFIGS[config]
              if model in models for precision in args.precisions.split(",")]
    rows, runs = [], []
    for i, (config, model, shape, preset, batch, overrides, precision) in enumerate(setups):
        spec = {"model": model, "image_shape": list(shape), "precision": precision, "preset": preset,
                "overrides": overrides, "batch": batch, "modes": modes, "steps": args.steps,
                "eager_steps": args.eager_steps, "sample": sample_sizes,
                "sample_repeats": args.sample_repeats, "eval_batches": args.eval_batches,
                "start_up_mode": args.start_up_mode}
        results = {side: [] for side in sides}
        for r in range(args.repeats):
            for side in (sides if (i + r) % 2 == 0 else sides[::-1]):  # alternate the order
                print(f"[{i + 1}/{len(setups)}] {config} {model} {precision}: {side} (run {r + 1})",
                      file=sys.stderr, flush=True)
                result = {} if args.start_up == "only" else measure_parts(
                    spec, trees[side], args.timeout, not args.shared_process)
                if args.start_up != "off":
                    result.update(measure_start_up(spec, trees[side], args.timeout))
                results[side].append(result)
                runs.append({"config": config, "side": side, "run": r + 1, "spec": spec, "result": result})
        merged = {side: harness.median_of(results[side]) for side in sides}
        for metric in _metrics([m for m in merged.values()], modes):
            row = {"config": config, "model": model, "precision": precision, "batch": batch, "metric": metric}
            if len(sides) == 2:
                before, after = merged["before"].get(metric), merged["after"].get(metric)
                row.update(before=before, after=after, **{"after/before": _ratio(before, after)})
            else:
                row["value"] = merged["after"].get(metric)
            for side in sides:
                if "error" in merged[side]:
                    row[side if len(sides) == 2 else "value"] = f"fails: {merged[side]['error']}"
            rows.append(row)

    notes = [f"{side}: {labels[side]}" for side in sides]
    warmup = ", ".join(f"{m} {n}" for m, n in harness.WARMUP.items())
    sample = (f"sample n = {', '.join(map(str, sample_sizes))}, {args.sample_repeats} timed call(s) each"
              if sample_sizes else "no sampling")
    evaluation = f"eval {args.eval_batches} batches, K = 1" if args.eval_batches else "no evaluation"
    processes = "one process for all modes" if args.shared_process else "a fresh process per train mode"
    notes += [(f"timed train steps {args.steps} (eager {args.eager_steps}) after warm-up steps ({warmup}), "
               f"{processes}; {sample}; {evaluation} (fastest of 3 passes, tf.data autotuning off); {args.repeats} run(s) per tree "
               "(medians)"),
              f"machine: {platform.machine()}, {os.cpu_count()} CPUs; Python {platform.python_version()}"]
    harness.write_results(
        rows, args.out, title="Speed before/after" if len(sides) == 2 else "Speed",
        formats={"after/before": "{:.2f}x"}, notes=notes,
        meta={"trees": labels, "configs": {c: CONFIGS[c] for c in configs}, "args": vars(args), "runs": runs},
    )
    if exported and not args.keep_baseline:
        shutil.rmtree(exported, ignore_errors=True)


if __name__ == "__main__":
    main()

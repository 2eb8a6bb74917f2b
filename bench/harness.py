"""The benchmarks' shared harness: timing a model's train step, sampling and evaluation, and
one way to write results (a markdown table on stdout and the same rows as JSON).

Timing (every script in bench/ times through these):

    tf = harness.tensorflow()                        # TensorFlow, after keras_bdgm picks Keras 2
    x = harness.random_images(64, (28, 28, 1))
    model = harness.build("flowpp", (28, 28, 1), "w1a1", "small")
    harness.initialize(model, x)
    harness.time_train(model, x, "XLA", steps=10)    # {"images_per_s": ..., "ms_per_step": ...}
    harness.time_sample(model, 64)                   # model.sample(64) as a user calls it
    harness.time_eval(model, x, batch_size=16)       # evaluate_bits_per_dim over x, K = 1

A train step is the model's Keras train function, compiled as `fit` compiles it, in one of
`MODES`: "eager" (run_eagerly=True), "compiled" (tf.function) or "XLA" (jit_compile=True);
jit_compile is always passed, so a model's default (`default_jit_compile`) does not change
what a mode measures; "default" compiles as `model.compile(optimizer)` does, and "run" as a
long `train` run does (the optimizer `train` uses; XLA for a model that has an
`xla_break_even_steps`). Warm-up calls (`WARMUP`, which include tracing and XLA compilation) are
not timed; the timed steps end by reading the last step's loss. Sampling and evaluation are
timed likewise, after one warm-up call of the same size.

`measure(spec)` runs all of these for one configuration (a dict; `SPEC_DEFAULTS` lists its
keys), each train mode on a freshly built model. `measure_in_tree(spec, tree)` runs `measure`
in a new Python process whose `keras_bdgm` is the one under `tree` (put first on PYTHONPATH,
and checked): the same measuring code against another version of the package, such as a
`git archive` of an older commit (`export_commit`). The code finds what differs between
versions instead of assuming it: where `evaluate_bits_per_dim` lives
(keras_bdgm.models.evaluation, keras_bdgm.evaluation before the package had wings, or
keras_bdgm.experiment before that), which keyword arguments
`sample` and `evaluate_bits_per_dim` take, where `build_model` lives.

Output:

    harness.write_results(rows, "bench/speed_output", title="...")
    # prints the rows as a markdown table; writes them, with the table, to bench/speed_output.json

Run as a script, it is `measure_in_tree`'s child: `python bench/harness.py --spec=JSON
--result=FILE [--tree=DIR]`.
"""

import argparse
import datetime
import gc
import inspect
import io
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

MODES = {
    "eager": {"run_eagerly": True, "jit_compile": False},
    "compiled": {"jit_compile": False},
    "XLA": {"jit_compile": True},
    "default": {},  # what `model.compile` picks when not told (a model's `default_jit_compile`)
    "run": {},  # as a long `train` run compiles it: its optimizer, XLA where the model's break-even asks
}
RUN_MODEL_NAMES = {"FlowPlusPlus": "flowpp", "ResNetVAE": "resnet_vae", "PixelCNN": "pixelcnn"}
ALIASES = {"tf.function": "compiled", "xla": "XLA", "jit": "XLA"}
WARMUP = {"eager": 1, "compiled": 2, "XLA": 2, "default": 2, "run": 2}  # untimed calls: tracing, XLA compilation

SPEC_DEFAULTS = {
    "model": "flowpp",            # "flowpp" or "resnet_vae"
    "image_shape": [28, 28, 1],
    "precision": "w1a1",
    "preset": "small",
    "overrides": {},              # preset fields
    "batch": 64,
    "modes": ["eager", "compiled", "XLA"],
    "steps": 10,                  # timed train steps per compiled mode
    "eager_steps": 2,             # timed train steps in eager mode
    "sample": 64,                 # images per model.sample call (0: not timed; a list: each size)
    "sample_repeats": 1,          # timed sample calls
    "eval_batches": 4,            # batches of `batch` images evaluated (0: not timed)
    "seed": 0,
    "start_up": None,             # "first step" or "first sample": measure_start_up instead
    "start_up_mode": "default",   # "run": the first step compiled as a long train run does (XLA where due)
}


# ---------------------------------------------------------------- the measurements


def tensorflow():
    """TensorFlow, imported after keras_bdgm (which selects Keras 2 before TensorFlow loads)."""
    import keras_bdgm  # noqa: F401, I001  (first)
    import tensorflow as tf

    return tf


def mode_name(mode):
    """The `MODES` key of a mode name or alias ("tf.function" -> "compiled")."""
    mode = ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of: {', '.join(MODES)}.")
    return mode


def accepts(function, name):
    """Whether `function` takes a keyword argument `name` (for code that runs against several
    versions of keras_bdgm)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def random_images(n, image_shape, seed=0):
    """n random uint8 images (speed does not depend on the content)."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (n, *image_shape), dtype=np.uint8)


def build(model, image_shape, precision="w1a1", preset="small", overrides=None, seed=0):
    """A fresh model ("flowpp" or "resnet_vae") in a cleared Keras session, seeded."""
    tf = tensorflow()
    build_model = version_function(("runs.recipes", "recipes", "experiment"), "build_model")  # runs/: since 0.3
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    return build_model(model, tuple(image_shape), precision, preset, **(overrides or {}))


def initialize(model, images):
    """keras_bdgm's data-dependent init on `images`."""
    import keras_bdgm

    keras_bdgm.initialize(model, images)


def version_function(modules, name):
    """`name` from the first of keras_bdgm's `modules` that the keras_bdgm in use has.

    Decided by the files of the imported package, not by trying the import: an editable
    install of another keras_bdgm resolves a submodule the package in use lacks to that
    install's file (whose code then meets this version's models)."""
    import importlib

    import keras_bdgm

    package = os.path.dirname(keras_bdgm.__file__)
    for module in modules:
        if os.path.exists(os.path.join(package, *module.split(".")) + ".py"):
            return getattr(importlib.import_module(f"keras_bdgm.{module}"), name)
    raise ImportError(f"{package} has none of the modules {', '.join(modules)} (looking for {name}).")


def evaluate_function():
    """`evaluate_bits_per_dim` of the keras_bdgm in use, wherever that version keeps it."""
    return version_function(("models.evaluation", "evaluation", "experiment"), "evaluate_bits_per_dim")


def trainable_parameters(model):
    """The model's trainable parameters (the same count in every keras_bdgm version, unlike
    `count_params`, which once counted the metrics' state too)."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def train_step(model, images, mode, optimizer=None):
    """Compiles `model` in `mode` (Adam 1e-3 unless `optimizer`) and returns a function that
    runs one train step on `images` (Keras' train function, as `fit` runs it) and returns its
    logs."""
    tf = tensorflow()
    options = MODES[mode_name(mode)]
    if mode_name(mode) == "run":
        optimizer, options = run_optimizer(RUN_MODEL_NAMES[type(model).__name__]), long_run_options(model)
    model.compile(optimizer or tf.keras.optimizers.Adam(1e-3), **options)
    train = model.make_train_function()
    data = iter(tf.data.Dataset.from_tensors(images).repeat())
    return lambda: train(data)


def _read(logs):
    return float(logs["bits_per_dim"])  # waits for the step


def time_train(model, images, mode, steps=10, warmup=None, optimizer=None):
    """Train-step throughput of `model` in `mode` on the batch `images`.

    Returns:
      {"images_per_s", "ms_per_step", "steps", "bits_per_dim"} (the last step's running
      mean loss, to spot a broken step).
    """
    mode = mode_name(mode)
    step = train_step(model, images, mode, optimizer)
    for _ in range(WARMUP[mode] if warmup is None else warmup):
        _read(step())
    start = time.perf_counter()
    for _ in range(steps):
        logs = step()
    bits_per_dim = _read(logs)
    elapsed = time.perf_counter() - start
    return {"images_per_s": steps * len(images) / elapsed, "ms_per_step": 1000 * elapsed / steps,
            "steps": steps, "bits_per_dim": bits_per_dim, "jit_compile": bool(getattr(model, "jit_compile", False))}


def time_sample(model, n, repeats=1, seed=0, **kwargs):
    """Throughput of `model.sample(n, seed=...)` with its defaults (what a user gets; extra
    `kwargs`, e.g. compiled=False, are passed where `sample` takes them), after one warm-up
    call of the same n.

    Returns:
      {"images_per_s", "ms_per_call"}.
    """
    import numpy as np

    kwargs = {k: v for k, v in kwargs.items() if accepts(model.sample, k)}
    np.asarray(model.sample(n, seed=seed, **kwargs))
    start = time.perf_counter()
    for r in range(repeats):
        np.asarray(model.sample(n, seed=seed + 1 + r, **kwargs))
    elapsed = time.perf_counter() - start
    return {"images_per_s": n * repeats / elapsed, "ms_per_call": 1000 * elapsed / repeats}


def time_eval(model, images, batch_size, num_samples=1, passes=3):
    """Throughput of `evaluate_bits_per_dim` (K = `num_samples`) over `images` in batches of
    `batch_size`, after a warm-up evaluation of one batch: the fastest of `passes` passes.

    The dataset runs without tf.data autotuning: with it, deleting the iterator at the end
    of a pass stalled for about 0.25 s in about half of the passes (in every keras_bdgm
    version; the evaluation's work the same), which at a few batches decided the figure.

    Returns:
      {"images_per_s", "ms_per_batch", "bits_per_dim"}.
    """
    tf = tensorflow()
    evaluate = evaluate_function()
    kwargs = {"verbose": 0} if accepts(evaluate, "verbose") else {}
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).with_options(options)
    evaluate(model, dataset.take(1), num_samples=num_samples, **kwargs)
    elapsed = math.inf
    for _ in range(passes):
        start = time.perf_counter()
        bits_per_dim = evaluate(model, dataset, num_samples=num_samples, **kwargs)
        elapsed = min(elapsed, time.perf_counter() - start)
    batches = math.ceil(len(images) / batch_size)
    return {"images_per_s": len(images) / elapsed, "ms_per_batch": 1000 * elapsed / batches,
            "bits_per_dim": float(bits_per_dim)}


def _gpu_memory():
    """(reset, peak MiB) functions of the first GPU, or None without one."""
    tf = tensorflow()
    if not tf.config.list_physical_devices("GPU"):
        return None
    return (lambda: tf.config.experimental.reset_memory_stats("GPU:0"),
            lambda: tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20)


def _failure(error, log):
    """The cell of a measurement that raised `error` (whose first line goes to `log`)."""
    lines = str(error).strip().splitlines()
    log(f"  failed: {type(error).__name__}: {lines[0][:500] if lines else ''}")
    return f"fails: {type(error).__name__}"


def measure(spec, log=None):
    """Times one configuration (`SPEC_DEFAULTS` lists the keys of `spec`).

    Sampling and evaluation run on one freshly built and initialized model; each train mode
    on another (so training one mode does not change what the next measures).

    Returns:
      {"train img/s <mode>": ..., "train ms/step <mode>": ..., "sample img/s": ... (with a
       list of sizes: "sample img/s n=<size>" each),
       "eval img/s": ..., ["peak GPU MiB <mode>": ...], "trainable parameters": ...,
       "keras_bdgm": its directory, "tensorflow": version}; a measurement that raised holds
      "fails: <error>" instead.
    """
    spec = {**SPEC_DEFAULTS, **spec}
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    tf = tensorflow()
    import keras_bdgm

    shape, batch = tuple(spec["image_shape"]), int(spec["batch"])
    images = random_images(batch, shape, spec["seed"])
    result = {"keras_bdgm": os.path.dirname(keras_bdgm.__file__), "tensorflow": tf.__version__}

    def fresh_model():
        model = build(spec["model"], shape, spec["precision"], spec["preset"], spec["overrides"], spec["seed"])
        initialize(model, images)
        result.setdefault("trainable parameters", trainable_parameters(model))
        return model

    label = f"{spec['model']} {spec['precision']} {spec['preset']} {list(shape)} batch {batch}"
    if spec["sample"] or spec["eval_batches"]:
        try:
            model = fresh_model()
        except Exception as error:  # noqa: BLE001  (report it, keep measuring)
            model = None
            result["sample img/s"] = result["eval img/s"] = _failure(error, log)
        several = isinstance(spec["sample"], (list, tuple))  # one key per size, else "sample img/s"
        sizes = [n for n in (spec["sample"] if several else [spec["sample"]]) if n]
        for n in sizes if model is not None else ():
            key = f"sample img/s n={n}" if several else "sample img/s"
            try:
                timing = time_sample(model, int(n), int(spec["sample_repeats"]))
                result[key] = timing["images_per_s"]
            except Exception as error:  # noqa: BLE001
                result[key] = _failure(error, log)
            log(f"  {label}: {key} {result[key]}")
        if model is not None and spec["eval_batches"]:
            try:
                eval_images = random_images(batch * int(spec["eval_batches"]), shape, spec["seed"] + 1)
                result["eval img/s"] = time_eval(model, eval_images, batch)["images_per_s"]
            except Exception as error:  # noqa: BLE001
                result["eval img/s"] = _failure(error, log)
            log(f"  {label}: eval img/s {result['eval img/s']}")
    gpu = _gpu_memory()
    for mode in map(mode_name, spec["modes"]):
        steps = int(spec["eager_steps"] if mode == "eager" else spec["steps"])
        model = None
        gc.collect()  # the last model's memory, before the next one's peak is measured
        try:
            model = fresh_model()
            if gpu:
                gpu[0]()
            timing = time_train(model, images, mode, steps)
            result[f"train img/s {mode}"] = timing["images_per_s"]
            result[f"train ms/step {mode}"] = timing["ms_per_step"]
            if mode == "default":
                result["default train mode"] = "XLA" if timing["jit_compile"] else "compiled"
            if gpu:
                result[f"peak GPU MiB {mode}"] = gpu[1]()
        except Exception as error:  # noqa: BLE001
            result[f"train img/s {mode}"] = _failure(error, log)
        log(f"  {label}: train img/s {mode} {result[f'train img/s {mode}']}")
    return result


def run_optimizer(model_name):
    """The optimizer `train` gives `model_name` in the keras_bdgm in use (`recipes.optimizer`
    since it exists; before that, Keras' Adam with the recipe's learning rate)."""
    tf = tensorflow()
    try:
        return version_function(("runs.recipes",), "optimizer")(model_name)
    except (ImportError, AttributeError):
        rate = version_function(("runs.recipes", "recipes", "experiment"), "learning_rate")(model_name)
        return tf.keras.optimizers.Adam(rate)


def long_run_options(model):
    """`compile` arguments of a long `train` run: XLA for a model with an
    `xla_break_even_steps` (older versions have none: their default)."""
    return {"jit_compile": True} if getattr(model, "xla_break_even_steps", None) is not None else {}


def measure_start_up(spec, spawned_at):
    """Seconds from `spawned_at` (the parent's clock when it started this process) until a
    fresh model's first train step has finished (spec "start_up": "first step": imports,
    build, data-dependent init, compile as `train` does, one step) or its first
    `sample(spec["sample"])` call has returned ("first sample": imports, build, init, one
    call). Returns the total and its parts."""
    import_done = time.time()
    tf = tensorflow()
    spec = {**SPEC_DEFAULTS, **spec}
    shape, batch = tuple(spec["image_shape"]), int(spec["batch"])
    images = random_images(batch, shape, spec["seed"])
    start = time.time()
    model = build(spec["model"], shape, spec["precision"], spec["preset"], spec["overrides"], spec["seed"])
    initialize(model, images)
    built = time.time()
    if spec["start_up"] == "first sample":
        n = spec["sample"][0] if isinstance(spec["sample"], (list, tuple)) else spec["sample"]
        import numpy as np

        np.asarray(model.sample(int(n), seed=spec["seed"]))
        key = "first sample"
    else:
        model.compile(run_optimizer(spec["model"]), **(long_run_options(model) if spec["start_up_mode"] == "run" else {}))
        train = model.make_train_function()
        _read(train(iter(tf.data.Dataset.from_tensors(images).repeat())))
        key = "first step"
    end = time.time()
    return {f"{key} s": end - spawned_at, f"{key}: imports s": import_done - spawned_at,
            f"{key}: build and init s": built - start, f"{key}: call s": end - built,
            f"{key}: jit_compile": bool(getattr(model, "jit_compile", False))}


# ---------------------------------------------------------------- other trees


def export_commit(commit, dest=None, repo=REPO):
    """Exports keras_bdgm/ of `commit` (`git archive`) into `dest` (default: a new temporary
    folder) and returns (folder, full commit hash)."""
    full = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    dest = dest or tempfile.mkdtemp(prefix=f"keras_bdgm_{full[:7]}_")
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", full, "keras_bdgm"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # Python without extraction filters
            tar.extractall(dest)
    return dest, full


def measure_in_tree(spec, tree=None, timeout=None, extra_env=None):
    """`measure(spec)` in a new Python process that imports keras_bdgm from `tree` (a folder
    holding keras_bdgm/; default: this repository), with `extra_env` added to its
    environment (e.g. KERAS_BDGM_XLA_CACHE). Its progress goes to stderr. With
    spec["start_up"], `measure_start_up` instead, timed from this process's clock just
    before the child starts.

    Returns:
      `measure`'s dict, or {"error": ...} if the process failed.
    """
    tree = str(pathlib.Path(tree or REPO).resolve())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra_env or {})
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "result.json")
        command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--spec", json.dumps(spec),
                   "--result", result_file, "--tree", tree, "--spawned_at", repr(time.time())]
        try:
            process = subprocess.run(command, env=env, stdout=sys.stderr, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if process.returncode or not os.path.exists(result_file):
            return {"error": f"exit status {process.returncode}"}
        with open(result_file) as f:
            return json.load(f)


def median_of(results):
    """Per key, the median of the numbers of several `measure` results (a failure if any
    result failed that key)."""
    merged = {}
    for key in dict.fromkeys(k for r in results for k in r):
        values = [r.get(key) for r in results]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        merged[key] = statistics.median(numbers) if len(numbers) == len(values) else next(
            (v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))), None)
    return merged


# ---------------------------------------------------------------- output


def _cell(value, fmt=None):
    if value is None:
        return "-"
    if fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(map(str, value)) + ")"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows, columns=None, formats=None):
    """Rows (dicts) as a markdown table: `columns` (default: every key, in order of first
    appearance), each cell formatted by `formats[column]` (a str.format pattern) or by
    default (ints with separators, floats to 3 significant digits or whole numbers)."""
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), formats.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _plain(value):
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def output_prefix(path):
    """`path` without a .json / .txt / .md extension (scripts took --out=name.txt before)."""
    if path is None:
        return None
    root, ext = os.path.splitext(str(path))
    return root if ext in (".json", ".txt", ".md") else str(path)


def write_results(rows, path_prefix=None, title=None, columns=None, formats=None, notes=(), meta=None):
    """The one way the benchmarks write results: `rows` (a list of dicts) as a markdown table
    on stdout, and the same rows as JSON in `<path_prefix>.json` (unless None).

    Args:
      rows: dicts of plain values (numbers, strings, lists); raw numbers, not formatted.
      path_prefix: the output file without extension (an extension .json/.txt/.md is dropped).
      title: a line printed above the table (and kept in the JSON).
      columns: the table's columns (default: every key); the JSON keeps every key.
      formats: {column: str.format pattern} for the table's cells.
      notes: lines printed below the table (and kept in the JSON).
      meta: a dict of anything else for the JSON (settings, versions).

    Returns:
      The printed text.
    """
    table = markdown_table(rows, columns, formats)
    text = "\n".join([*([f"## {title}", ""] if title else []), table, *([""] + list(notes) if notes else [])])
    print(text, flush=True)
    prefix = output_prefix(path_prefix)
    if prefix:
        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
        record = {
            "title": title, "command": " ".join([os.path.relpath(sys.argv[0]) if sys.argv[0] else "", *sys.argv[1:]]),
            "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "columns": list(columns or dict.fromkeys(k for row in rows for k in row)),
            "rows": rows, "notes": list(notes), "meta": meta or {}, "markdown": text,
        }
        with open(prefix + ".json", "w") as f:
            json.dump(record, f, indent=1, default=_plain)
            f.write("\n")
    return text


def main():
    parser = argparse.ArgumentParser(description="measure_in_tree's child: measure(spec) into a JSON file.")
    parser.add_argument("--spec", required=True, help="the configuration, as JSON (SPEC_DEFAULTS' keys)")
    parser.add_argument("--result", required=True, help="file to write measure's dict to, as JSON")
    parser.add_argument("--tree", default=None, help="the folder keras_bdgm must come from (checked)")
    parser.add_argument("--spawned_at", type=float, default=None, help="the parent's time.time() at the start")
    args = parser.parse_args()
    import keras_bdgm

    where = pathlib.Path(keras_bdgm.__file__).resolve().parent
    if args.tree and where.parent != pathlib.Path(args.tree).resolve():
        raise SystemExit(f"harness: keras_bdgm came from {where}, not from {args.tree}")
    spec = json.loads(args.spec)
    result = measure_start_up(spec, args.spawned_at) if spec.get("start_up") else measure(spec)
    with open(args.result, "w") as f:
        json.dump(result, f, default=_plain)


if __name__ == "__main__":
    main()

"""Trained models that ship inside the package, as packed 1-bit files.

Each model is two files in this folder: `<model>_<precision>_<dataset>.bdgm` (the packed
weights: 1 bit per binary weight, 32 per real one; see `keras_bdgm.memory`) and
`<model>_<precision>_<dataset>.json`, its record: the architecture (model, preset,
overrides, image shape), the precision, the dataset, the training budget and the test
bits/dim it reached. `load` rebuilds the architecture from the record and reads the
weights into it; the packed format's CRC-32 catches a damaged file.

Example:

    import keras_bdgm
    print(keras_bdgm.pretrained.list())   # ['resnet_vae/w1a1/fashion_mnist', ...]
    vae = keras_bdgm.pretrained.load("resnet_vae", precision="w1a1", dataset="fashion_mnist")
    vae.record["test_bits_per_dim"]
    images = vae.sample(16, seed=0)
"""

import builtins
import json
import os
import pathlib

from keras_bdgm import memory
from keras_bdgm.runs.errors import ConfigError, RunNotFoundError

DIRECTORY = pathlib.Path(__file__).parent
_RECORD_KEYS = ("model", "precision", "dataset", "image_shape", "preset", "overrides")


def _name(model, precision, dataset):
    return f"{model}/{precision}/{dataset}"


def _stem(model, precision, dataset):
    return f"{model}_{precision}_{dataset}"


def list(directory=None):  # noqa: A001  (the public name the package documents)
    """Names ("model/precision/dataset") of the models in `directory` (default: shipped)."""
    directory = pathlib.Path(directory or DIRECTORY)
    names = []
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        names.append(_name(record["model"], record["precision"], record["dataset"]))
    return names


def parse_name(name, precision=None, dataset=None):
    """(model, precision, dataset) from "model", "model/precision" or "model/precision/dataset"."""
    parts = str(name).split("/")
    if len(parts) > 3 or not all(parts):
        raise ConfigError(f"Bad pretrained model name {name!r}; use 'model/precision[/dataset]', "
                         f"e.g. 'resnet_vae/w1a1'.")
    model = parts[0]
    precision = parts[1] if len(parts) > 1 else precision
    dataset = parts[2] if len(parts) > 2 else (dataset or "fashion_mnist")
    if precision is None:
        raise ConfigError(f"Pretrained model {name!r} needs a precision, e.g. '{model}/w1a1'.")
    return model, precision, dataset


def load(name, precision=None, dataset=None, directory=None):
    """A ready model of the shipped weights, with its record as `model.record`.

    Args:
      name: "resnet_vae" (with `precision`), "resnet_vae/w1a1" or "resnet_vae/w1a1/fashion_mnist".
      precision: "w1a1", "w1a32" or "w32a32" when `name` has none.
      dataset: default "fashion_mnist".
      directory: where the files are (default: the ones shipped with the package).

    Raises:
      FileNotFoundError (`keras_bdgm.runs.errors.RunNotFoundError`): no such model (the message
        lists the available ones).
      ValueError (`keras_bdgm.runs.errors.ConfigError`): a damaged or mismatched packed file, or
        a bad name.
    """
    from keras_bdgm.runs.recipes import build_model  # imports the model classes

    model, precision, dataset = parse_name(name, precision, dataset)
    directory = pathlib.Path(directory or DIRECTORY)
    stem = directory / _stem(model, precision, dataset)
    record_path, packed_path = stem.with_suffix(".json"), stem.with_suffix(".bdgm")
    if not record_path.exists() or not packed_path.exists():
        available = ", ".join(list(directory)) or "none"
        missing = record_path if not record_path.exists() else packed_path
        raise RunNotFoundError(
            f"No pretrained model {_name(model, precision, dataset)!r} ({missing} is missing); "
            f"available: {available}."
        )
    record = json.loads(record_path.read_text())
    for key in _RECORD_KEYS:
        if key not in record:
            raise ValueError(f"{record_path} lacks {key!r}; the record is damaged.")
    net = build_model(record["model"], tuple(record["image_shape"]), record["precision"],
                                 record["preset"], **record["overrides"])
    try:
        memory.load_packed(net, str(packed_path))
    except ValueError as err:
        raise ConfigError(f"The pretrained file {packed_path} is damaged ({err}); reinstall keras_bdgm.") from None
    net.record = record
    return net


def save(model, record, directory=None):
    """Writes `model` (packed) and its `record` (a dict with at least model, precision,
    dataset, image_shape, preset, overrides) into `directory`; returns the packed path."""
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"A pretrained record needs {', '.join(missing)}.")
    directory = pathlib.Path(directory or DIRECTORY)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / _stem(record["model"], record["precision"], record["dataset"])
    packed = stem.with_suffix(".bdgm")
    record = {**record, "packed_bytes": memory.save_packed(model, str(packed))}
    tmp = str(stem) + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, stem.with_suffix(".json"))
    return str(packed)


def export_run(model_dir, directory=None, extra=None):
    """Packs the finished training run in `model_dir` (its model.keras and report.json)
    into `directory` with a record built from the report; returns the packed path."""
    from keras_bdgm import datasets
    from keras_bdgm.runs import run_dir

    with open(os.path.join(model_dir, run_dir.REPORT_FILE)) as f:
        report = json.load(f)
    model = run_dir.load_model(model_dir)
    record = {
        "model": report["model"], "precision": report["precision"], "dataset": report["dataset"],
        "image_shape": builtins.list(datasets.image_shape(report["dataset"])), "preset": report["preset"],
        "overrides": report["overrides"],
        **{k: report[k] for k in ("test_bits_per_dim", "eval_split", "eval_examples", "eval_batch_size", "batch_size", "epochs",
                                  "steps_per_epoch", "seed", "parameters", "binary_share") if k in report},
        **(extra or {}),
    }
    return save(model, record, directory)

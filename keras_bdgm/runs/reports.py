"""What a finished run leaves in its folder: samples.png, model.keras, model.bdgm, report.json.

`write_model_files` writes the first three from the trained model, each atomically and each
once (a run killed while writing them writes only the missing ones when it continues);
`report` builds report.json's contents from the model and the run's state, so it covers
every process of the run.

Example:

    write_model_files(model, run, num_samples=64, seed=0)
    run_dir.write_json(run.file(REPORT_FILE), report(model, config, run, replicas=1))
"""

import os

from keras_bdgm import datasets
from keras_bdgm import image_grid, memory
from keras_bdgm.runs import run_dir
from keras_bdgm.runs.run_dir import KERAS_FILE, PACKED_FILE, REPORT_FILE, SAMPLES_FILE  # noqa: F401


def write_model_files(model, run, num_samples, seed):
    """samples.png (a grid of `num_samples` samples), model.keras and model.bdgm in `run`'s folder."""

    def samples(tmp):
        image_grid.sample_grid(model, num_samples, seed=seed, path=tmp)

    for name, write in ((SAMPLES_FILE, samples), (KERAS_FILE, model.save),
                        (PACKED_FILE, lambda tmp: memory.save_packed(model, tmp))):
        if not run.written(name):
            run_dir.write_atomically(run.file(name), write)
            run.mark_written(name)


def report(model, config, run, replicas):
    """report.json's contents: settings, test bits/dim, memory, and the whole run's history,
    throughput and time (every process, not only the last)."""
    fp = memory.footprint(model)
    epochs = run.state["epochs"].values()
    images = sum(e.get("timed_images", 0) for e in epochs)
    seconds = sum(e.get("timed_seconds", 0.0) for e in epochs)
    starts = run.state["starts"]
    _, default_eval_split, note = datasets.train_and_eval_splits(config.dataset)
    run.save()  # the time up to now
    return {
        "dataset": config.dataset,
        "model": config.model,
        "precision": config.precision,
        "preset": config.preset,
        "overrides": config.overrides,
        "test_bits_per_dim": float(run.state["test_bits_per_dim"]),
        "eval_split": config.eval_split,
        "eval_examples": config.eval_examples,
        "eval_batch_size": config.eval_batch,
        "train_split": config.train_split,
        "eval_note": note if config.eval_split == default_eval_split else None,
        "train_bits_per_dim": run.epoch_logs("bits_per_dim"),
        "skipped_steps": run.epoch_logs("skipped_steps"),
        "parameters": fp.parameters,
        "binary_weights": fp.binary_weights,
        "real_parameters": fp.real_parameters,
        "binary_share": fp.binary_share,
        "float32_bytes": fp.float32_bytes,
        "one_bit_bytes": fp.bytes,
        "packed_bytes": os.path.getsize(run.file(PACKED_FILE)),
        # Train steps only, without each process's first step (which traces the step function).
        "images_per_second": images / seconds if seconds > 0 else None,
        "wall_time_s": run.state["elapsed_s"],  # every process of the run, up to this report
        "processes": len(starts),
        "resumed_after_epoch": starts[-1]["completed_epochs"] if len(starts) > 1 else 0,
        "epochs": config.epochs,
        "steps_per_epoch": config.steps_per_epoch,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "strategy": config.strategy,
        "replicas": replicas,
    }

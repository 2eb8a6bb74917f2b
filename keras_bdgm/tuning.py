"""keras-tuner search over residual width and precision, through `train`.

keras-tuner 1.4 imports Keras 3 and cannot take tf_keras models from `build()`, so the
search overrides `run_trial` (keras-tuner's documented route for any training code): each
trial trains with `keras_bdgm.experiment.train` and returns its validation bits/dim and
memory. The objective is `val_bits_per_dim` (minimized).

Example:

    tuner = WidthSearch(TrainConfig(model="flowpp", epochs=1, model_dir="runs/search"),
                        widths=[16, 32], precisions=["w1a1"], max_trials=2)
    tuner.search()
    print(format_table(tuner.results()))
"""

import dataclasses
import os

import keras_tuner as kt

from keras_bdgm import experiment

OBJECTIVE = "val_bits_per_dim"


class WidthSearch(kt.GridSearch):
    """Grid search over `widths` x `precisions`; every trial is a full `train` run.

    Args:
      config: the `TrainConfig` every trial starts from; its `model_dir` holds the search.
      widths: residual widths to try (the presets' `width` hyperparameter).
      precisions: precisions to try.
      validation_split: the split that scores trials (default: the last 10% of train, so
        the test split stays untouched).
      max_trials: at most this many trials.
    """

    def __init__(self, config, widths, precisions=("w1a1",), validation_split="train[90%:]",
                 max_trials=None, **kwargs):
        if not widths:
            raise ValueError("widths must list at least one residual width.")
        self.base_config = config
        self.validation_split = validation_split
        hp = kt.HyperParameters()
        hp.Choice("width", [int(w) for w in widths])
        hp.Choice("precision", list(precisions))
        super().__init__(
            objective=kt.Objective(OBJECTIVE, direction="min"),
            hyperparameters=hp,
            max_trials=max_trials,
            directory=config.model_dir,
            project_name="width_search",
            overwrite=False,
            **kwargs,
        )
        self.reports = {}

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        config = dataclasses.replace(
            self.base_config,
            precision=hp.get("precision"),
            overrides={**self.base_config.overrides, "width": hp.get("width")},
            model_dir=os.path.join(self.base_config.model_dir, f"trial_{trial.trial_id}"),
            eval_split=self.validation_split,
        )
        report = experiment.train(config)
        self.reports[trial.trial_id] = report
        return {OBJECTIVE: report["test_bits_per_dim"]}

    def results(self):
        """One row per finished trial: width, precision, bits/dim, memory."""
        rows = []
        for trial in self.oracle.trials.values():
            report = self.reports.get(trial.trial_id)
            score = trial.metrics.get_best_value(OBJECTIVE) if trial.metrics.exists(OBJECTIVE) else None
            rows.append({
                "trial": trial.trial_id,
                "width": trial.hyperparameters.get("width"),
                "precision": trial.hyperparameters.get("precision"),
                OBJECTIVE: score,
                "parameters": report and report["parameters"],
                "binary_share": report and report["binary_share"],
                "packed_bytes": report and report["packed_bytes"],
                "float32_bytes": report and report["float32_bytes"],
                "status": trial.status,
            })
        return sorted(rows, key=lambda r: (r[OBJECTIVE] is None, r[OBJECTIVE] or 0.0))


def format_table(rows):
    """The trials as a plain-text table, best first."""
    header = ["trial", "width", "precision", OBJECTIVE, "parameters", "binary", "packed KB", "float32 KB"]
    lines = [header]
    for r in rows:
        def fmt(value, spec):
            return "-" if value is None else format(value, spec)
        lines.append([
            str(r["trial"]), str(r["width"]), r["precision"], fmt(r[OBJECTIVE], ".4f"),
            fmt(r["parameters"], ","), fmt(r["binary_share"], ".1%"),
            fmt(r["packed_bytes"] and r["packed_bytes"] / 1024, ".1f"),
            fmt(r["float32_bytes"] and r["float32_bytes"] / 1024, ".1f"),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in lines)

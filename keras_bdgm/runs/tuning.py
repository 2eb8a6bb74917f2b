"""keras-tuner search over residual width and precision, through `train`.

keras-tuner 1.4 imports Keras 3 and cannot take tf_keras models from `build()`, so the
search overrides `run_trial` (keras-tuner's documented route for any training code): each
trial trains with `keras_bdgm.runs.experiment.train` and returns its validation bits/dim and
memory. The objective is `val_bits_per_dim` (minimized).

A trial's run evaluates on the search's validation split (its `eval_split`), and `train`
reports the score of a run's eval split as "test_bits_per_dim"; `validation_report` renames
that score to `val_bits_per_dim` in the trial's report (and report.json), so nothing in a
trial says "test" about validation data.

Example:

    tuner = WidthSearch(TrainConfig(model="flowpp", epochs=1, model_dir="runs/search"),
                        widths=[16, 32], precisions=["w1a1"], max_trials=2)
    tuner.search()
    print(format_table(tuner.results()))
"""

import dataclasses
import os
import time

import keras_tuner as kt
import tensorflow as tf

from keras_bdgm.runs import experiment, run_dir

OBJECTIVE = "val_bits_per_dim"
_EVAL_SCORE = "test_bits_per_dim"  # what `train`'s report calls the score of its eval split


def validation_report(report, validation_split):
    """A trial's `train` report with its eval-split score under `OBJECTIVE`.

    Raises:
      ValueError: the run was not evaluated on `validation_split`.
    """
    report = dict(report)
    if _EVAL_SCORE in report:
        if report.get("eval_split", validation_split) != validation_split:
            raise ValueError(
                f"The trial was evaluated on {report['eval_split']!r}, not on the validation split "
                f"{validation_split!r}; its score is no validation score."
            )
        report[OBJECTIVE] = report.pop(_EVAL_SCORE)
    return report


class TimeBudget(tf.keras.callbacks.Callback):
    """Stops training after `seconds` of wall time in `fit` (checked after every step), so
    that trials of different sizes get the same training time."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)
        self.steps = 0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.perf_counter() - self._start >= self.seconds:
            self.model.stop_training = True


class WidthSearch(kt.GridSearch):
    """Grid search over `widths` x `precisions`; every trial is a full `train` run.

    Args:
      config: the `TrainConfig` every trial starts from; its `model_dir` holds the search.
      widths: residual widths to try (the presets' `width` hyperparameter).
      precisions: precisions to try.
      validation_split: the split that scores trials (default: the last 10% of train, so
        the test split stays untouched).
      train_split: the split trials train on (default: the first 90% of train, disjoint
        from the validation split).
      max_trials: at most this many trials.
      seconds_per_trial: if set, each trial trains for this much wall time (at most its
        epochs x steps), so trials compare at an equal training time.
    """

    def __init__(self, config, widths, precisions=("w1a1",), validation_split="train[90%:]",
                 train_split="train[:90%]", max_trials=None, seconds_per_trial=None, **kwargs):
        if not widths:
            raise ValueError("widths must list at least one residual width.")
        self.base_config = config
        self.validation_split, self.train_split = validation_split, train_split
        self.seconds_per_trial = seconds_per_trial
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
            train_split=self.train_split,
        )
        budget = [TimeBudget(self.seconds_per_trial)] if self.seconds_per_trial else []
        start = time.perf_counter()
        report = validation_report(experiment.train(config, callbacks=budget), self.validation_split)
        report["train_steps"] = budget[0].steps if budget else config.epochs * config.steps_per_epoch
        report["trial_minutes"] = (time.perf_counter() - start) / 60
        # In the trial's report.json too, so a later run of the search still shows them.
        run_dir.write_json(os.path.join(config.model_dir, run_dir.REPORT_FILE), report)
        self.reports[trial.trial_id] = report
        return {OBJECTIVE: report[OBJECTIVE]}

    def _stored_report(self, trial_id):
        """The report.json of a trial finished by an earlier run of this search, or None."""
        path = os.path.join(self.base_config.model_dir, f"trial_{trial_id}", run_dir.REPORT_FILE)
        return run_dir.read_json(path) if os.path.exists(path) else None

    def results(self):
        """One row per finished trial: width, precision, bits/dim, memory."""
        rows = []
        for trial in self.oracle.trials.values():
            report = self.reports.get(trial.trial_id) or self._stored_report(trial.trial_id)
            score = trial.metrics.get_best_value(OBJECTIVE) if trial.metrics.exists(OBJECTIVE) else None
            rows.append({
                "trial": trial.trial_id,
                "width": trial.hyperparameters.get("width"),
                "precision": trial.hyperparameters.get("precision"),
                OBJECTIVE: score,
                "parameters": report and report.get("parameters"),
                "binary_share": report and report.get("binary_share"),
                "packed_bytes": report and report.get("packed_bytes"),
                "float32_bytes": report and report.get("float32_bytes"),
                "train_steps": report and report.get("train_steps"),
                "images_per_second": report and report.get("images_per_second"),
                "status": trial.status,
            })
        return sorted(rows, key=lambda r: (r[OBJECTIVE] is None, r[OBJECTIVE] or 0.0))


def format_table(rows):
    """The trials as a plain-text table, best first."""
    header = ["trial", "width", "precision", OBJECTIVE, "parameters", "binary", "packed KB", "float32 KB",
              "steps", "train img/s"]
    lines = [header]
    for r in rows:
        def fmt(value, spec):
            return "-" if value is None else format(value, spec)
        lines.append([
            str(r["trial"]), str(r["width"]), r["precision"], fmt(r[OBJECTIVE], ".4f"),
            fmt(r["parameters"], ","), fmt(r["binary_share"], ".1%"),
            fmt(r["packed_bytes"] and r["packed_bytes"] / 1024, ".1f"),
            fmt(r["float32_bytes"] and r["float32_bytes"] / 1024, ".1f"),
            fmt(r.get("train_steps"), "d"), fmt(r.get("images_per_second"), ".0f"),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in lines)

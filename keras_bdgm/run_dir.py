"""A training run's folder: its configuration, the phase it is in and its progress.

    model_dir/
      run.json      the run's settings, written when it first starts
      state.json    phase, per-epoch training logs, time spent, every start of a process
      backup/       the training state (Keras BackupAndRestore), until the model files exist
      checkpoints/  weights after every epoch;  logs/  TensorBoard
      samples.png, model.keras, model.bdgm
      report.json   written last: a folder holding it holds a finished run

A run goes through the phases training -> evaluating -> writing -> reporting. Every file
here is replaced atomically (written beside, then renamed), so a process killed at any
moment leaves the previous version; started again with the same settings, the run
continues in the phase it was in and redoes no finished work.

Settings that change the model, its training or its results (`FIXED`) must be the same on
every start; `epochs` may grow while the run is unfinished (the run then trains on).

Example:

    run = Run("runs/a")
    run.start({"model": "flowpp", "epochs": 10, ...}, overwrite=False)
    run.record_epoch(0, {"bits_per_dim": 5.1})
    run.set_phase("evaluating")
"""

import json
import os
import shutil
import time

from keras_bdgm.errors import ConfigError, RunExistsError

PHASES = ("training", "evaluating", "writing", "reporting")
CONFIG_FILE, STATE_FILE, REPORT_FILE = "run.json", "state.json", "report.json"
BACKUP_DIR = "backup"
# Everything a run writes into its folder (what --overwrite removes).
RUN_ENTRIES = (CONFIG_FILE, STATE_FILE, REPORT_FILE, BACKUP_DIR, "checkpoints", "logs",
               "samples.png", "model.keras", "model.bdgm", "validation_curve.json")
# Settings a restart must repeat; every other one (paths, verbosity) may change.
FIXED = ("model", "precision", "preset", "overrides", "dataset", "train_split", "batch_size",
         "learning_rate", "seed", "steps_per_epoch", "strategy", "eval_split", "eval_examples",
         "init_examples", "num_samples_grid", "validation_split", "validation_examples",
         "validation_every")


def check_model_dir(path):
    """Raises ConfigError unless `path` is a folder or does not exist yet."""
    if not path:
        raise ConfigError("--model_dir is empty; pass a folder for the run, e.g. --model_dir=runs/a.")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--model_dir={path} is a file, not a folder; pass a folder for the run.")


def write_atomically(path, write):
    """Calls `write(tmp_path)` then renames tmp_path to `path` (keeps the extension)."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{ext}"
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
    write_atomically(path, write)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def _canonical(value):
    return json.dumps(value, sort_keys=True)


def _shown(value):
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else value


def _differences(stored, config, keys):
    """"--k=<stored> there, <config> now; ..." for the `keys` whose values differ ("" if none)."""
    return "; ".join(
        f"--{k}={_shown(stored.get(k))} there, {_shown(config.get(k))} now"
        for k in keys if _canonical(stored.get(k)) != _canonical(config.get(k))
    )


class Run:
    """The run in folder `path`: its settings (`config`) and progress (`state`)."""

    def __init__(self, path):
        self.path = str(path)
        self.config, self.state = None, None
        self._clock = self._base = None

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def finished(self):
        return os.path.exists(self.file(REPORT_FILE))

    def stored_config(self):
        """The settings of the run already in the folder, or None."""
        path = self.file(CONFIG_FILE)
        return read_json(path) if os.path.exists(path) else None

    def stored_state(self):
        path = self.file(STATE_FILE)
        return read_json(path) if os.path.exists(path) else None

    def clear(self):
        """Removes what a run wrote here (for --overwrite); other files stay."""
        for name in RUN_ENTRIES:
            path = self.file(name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def check(self, config, overwrite=False):
        """Raises unless a run with `config` may start (or continue) here; creates nothing.

        Returns True when the folder holds this very run, finished (nothing left to do).
        """
        check_model_dir(self.path)
        if overwrite or not os.path.isdir(self.path):
            return False
        stored = self.stored_config()
        if self.finished:
            differ = _differences(stored, config, (*FIXED, "epochs")) if stored is not None else None
            if differ == "":
                return True
            raise RunExistsError(
                f"{self.path} already holds a finished run ({REPORT_FILE})"
                + (f" with other settings ({differ})" if differ else "")
                + "; pass --overwrite to train again there, or choose another --model_dir."
            )
        if stored is None:
            return False
        differ = _differences(stored, config, FIXED)
        if differ:
            raise ConfigError(
                f"{self.path} holds a run with other settings ({differ}); restart it with its "
                "settings, pass --overwrite to start over there, or choose another --model_dir."
            )
        if config["epochs"] < stored["epochs"]:
            raise ConfigError(
                f"{self.path} holds a run of {stored['epochs']} epochs; --epochs={config['epochs']} "
                f"would shorten it. Pass --epochs={stored['epochs']} or more, --overwrite, or another --model_dir."
            )
        state = self.stored_state() or {}
        if config["epochs"] > stored["epochs"] and state.get("phase") == "reporting":
            raise ConfigError(
                f"{self.path} finished training its {stored['epochs']} epochs and is writing its "
                "report; rerun it with its --epochs, then train longer with --overwrite or in "
                "another --model_dir."
            )
        return False

    def start(self, config, overwrite=False, completed_epochs=0):
        """Opens the run for this process: checks `config`, writes run.json, records the start.

        Returns the phase to continue in. Extending `epochs` sends a run back to training.
        """
        self.check(config, overwrite)
        if overwrite:
            self.clear()
        os.makedirs(self.path, exist_ok=True)
        stored = self.stored_config()
        state = self.stored_state() or {
            "phase": PHASES[0], "epochs": {}, "elapsed_s": 0.0, "starts": [], "written": [],
        }
        if stored is not None and config["epochs"] > stored["epochs"] and state["phase"] != "training":
            state.update(phase="training", written=[])
            state.pop("test_bits_per_dim", None)
        # Epochs past the training state's last backup are trained again (same values).
        state["epochs"] = {k: v for k, v in state["epochs"].items() if int(k) < completed_epochs}
        state["starts"].append({"phase": state["phase"], "completed_epochs": completed_epochs})
        self.config, self.state = dict(config), state
        write_json(self.file(CONFIG_FILE), self.config)
        self._clock, self._base = time.monotonic(), float(state["elapsed_s"])
        self.save()
        return state["phase"]

    @property
    def phase(self):
        return self.state["phase"]

    def save(self):
        """Writes state.json, adding this process's time so far."""
        self.state["elapsed_s"] = self._base + (time.monotonic() - self._clock)
        write_json(self.file(STATE_FILE), self.state)

    def set_phase(self, phase, **fields):
        if phase not in PHASES:
            raise ValueError(f"Unknown phase {phase!r}; expected one of {PHASES}.")
        self.state.update(phase=phase, **fields)
        self.save()

    def record_epoch(self, epoch, logs):
        """Stores the logs of finished epoch `epoch` (0-based), replacing an earlier try."""
        self.state["epochs"][str(int(epoch))] = {k: float(v) for k, v in logs.items()}
        self.save()

    def epoch_logs(self, key):
        """[value of `key` for epoch 0, 1, ...] over the whole run (every process)."""
        epochs = sorted(self.state["epochs"].items(), key=lambda item: int(item[0]))
        return [logs.get(key) for _, logs in epochs]

    def mark_written(self, name):
        if name not in self.state["written"]:
            self.state["written"].append(name)
        self.save()

    def written(self, name):
        return name in self.state["written"] and os.path.exists(self.file(name))

    def remove_backup(self):
        shutil.rmtree(self.file(BACKUP_DIR), ignore_errors=True)

"""A training run's folder: its configuration, the phase it is in and its progress.

    model_dir/
      run.json      the run's settings, written when it first starts
      state.json    phase, per-epoch training logs, time spent, every start of a process
      backup/       the training state (Keras BackupAndRestore), until the model files exist
      checkpoints/  weights after every epoch;  logs/  TensorBoard
      validation_curve.json  validation bits/dim against step (if asked for)
      samples.png, model.keras, model.bdgm
      report.json   written last: a folder holding it holds a finished run

A run goes through the phases training -> evaluating -> writing -> reporting. Every file
here is replaced atomically (written beside, then renamed), so a process killed at any
moment leaves the previous version; started again with the same settings, the run
continues in the phase it was in and redoes no finished work.

In a multi-worker run (keras_bdgm.runs.strategies) only the chief writes here. The other workers
open the run read-only (`Run(path, read_only=True)`: the same checks, phases and progress,
kept in memory) and share backup/ with it: Keras's BackupAndRestore, ModelCheckpoint and
TensorBoard write a non-chief worker's copies under `workertemp_<task id>/` and delete them
after each save, and every worker restores from backup/chief/. The folder must be one that
every worker sees (a shared or network file system).

Settings that change the model, its training or its results (`FIXED`) must be the same on
every start; `epochs` may grow while the run is unfinished (the run then trains on).

Example:

    run = Run("runs/a")
    run.start({"model": "flowpp", "epochs": 10, ...}, overwrite=False)
    run.record_epoch(0, {"bits_per_dim": 5.1})
    run.set_phase("evaluating")
    model = load_model("runs/a")  # once finished
"""

import json
import os
import shutil
import time

import tensorflow as tf

from keras_bdgm.models.updates import build_optimizer
from keras_bdgm.runs.errors import ConfigError, RunExistsError, RunNotFoundError

PHASES = ("training", "evaluating", "writing", "reporting")
CONFIG_FILE, STATE_FILE, REPORT_FILE = "run.json", "state.json", "report.json"
SAMPLES_FILE, KERAS_FILE, PACKED_FILE = "samples.png", "model.keras", "model.bdgm"
VALIDATION_FILE = "validation_curve.json"
BACKUP_DIR, CHECKPOINT_DIR, LOG_DIR = "backup", "checkpoints", "logs"
# Everything a run writes into its folder (what --overwrite removes).
RUN_ENTRIES = (CONFIG_FILE, STATE_FILE, REPORT_FILE, BACKUP_DIR, CHECKPOINT_DIR, LOG_DIR,
               SAMPLES_FILE, KERAS_FILE, PACKED_FILE, VALIDATION_FILE)
# Settings a restart must repeat; every other one (paths, verbosity) may change.
FIXED = ("model", "precision", "preset", "overrides", "dataset", "train_split", "batch_size",
         "learning_rate", "learning_rate_decay", "warm_start", "seed", "steps_per_epoch", "strategy", "eval_split", "eval_examples",
         "eval_batch_size", "init_examples", "num_samples_grid", "validation_split", "validation_examples",
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

    def __init__(self, path, read_only=False):
        self.path = str(path)
        # read_only: a non-chief worker of a multi-worker run follows the chief's run here
        # (same phases and progress, in memory) and writes nothing.
        self.read_only = bool(read_only)
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
        if config.get("learning_rate_decay") == "cosine" and config["epochs"] > stored["epochs"]:
            raise ConfigError(
                f"{self.path} holds a run whose cosine learning rate decays to 0 over its "
                f"{stored['epochs']} epochs; rerun it with --epochs={stored['epochs']}, or train on "
                "from its model in another --model_dir with --warm_start."
            )
        state = self.stored_state() or {}
        if config["epochs"] > stored["epochs"] and state.get("phase") == "reporting":
            raise ConfigError(
                f"{self.path} finished training its {stored['epochs']} epochs and is writing its "
                "report; rerun it with its --epochs, then train longer with --overwrite or in "
                "another --model_dir."
            )
        return False

    def _opened_state(self, config, overwrite):
        """The state this run continues from with `config` (read only; nothing changes)."""
        stored = None if overwrite else self.stored_config()
        state = (None if overwrite else self.stored_state()) or {
            "phase": PHASES[0], "epochs": {}, "elapsed_s": 0.0, "starts": [], "written": [],
        }
        if stored is not None and config["epochs"] > stored["epochs"] and state["phase"] != "training":
            state.update(phase="training", written=[])
            state.pop("test_bits_per_dim", None)
        return state

    def next_phase(self, config, overwrite=False):
        """The phase `start(config, overwrite)` will continue in, read from the folder alone
        (no TensorFlow, nothing written): how every worker of a multi-worker run agrees on
        what to do before they connect."""
        return self._opened_state(config, overwrite)["phase"]

    def start(self, config, overwrite=False, completed_epochs=0):
        """Opens the run for this process: checks `config`, writes run.json, records the start.

        Returns the phase to continue in. Extending `epochs` sends a run back to training.
        A read-only run (a non-chief worker) checks and follows the chief's run in memory.
        """
        self.check(config, overwrite)
        if overwrite and not self.read_only:
            self.clear()
        state = self._opened_state(config, overwrite)
        # Epochs past the training state's last backup are trained again (same values).
        state["epochs"] = {k: v for k, v in state["epochs"].items() if int(k) < completed_epochs}
        state["starts"].append({"phase": state["phase"], "completed_epochs": completed_epochs})
        self.config, self.state = dict(config), state
        if not self.read_only:
            os.makedirs(self.path, exist_ok=True)
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
        if not self.read_only:
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
        if not self.read_only:
            shutil.rmtree(self.file(BACKUP_DIR), ignore_errors=True)

    # The training state: Keras BackupAndRestore's copy in backup/ (under chief/, the chief
    # worker's), kept after training until the model files exist.

    def _latest_backup(self):
        return tf.train.latest_checkpoint(os.path.join(self.file(BACKUP_DIR), "chief"))

    def completed_epochs(self):
        """Epochs finished according to the training state in backup/ (0 if none)."""
        latest = self._latest_backup()
        if latest is None:
            return 0
        reader = tf.train.load_checkpoint(latest)
        key = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
        return int(reader.get_tensor(key)) + 1 if reader.has_tensor(key) else 0

    def check_optimizer_state(self, optimizer):
        """Raises ConfigError where the training state in backup/ was written by the other
        kind of Keras optimizer than `optimizer` (tf.keras.optimizers.legacy vs the newer
        ones: their variables are named differently, so restoring would silently restart
        the optimizer's moments and step count, and with them a decaying learning rate)."""
        latest = self._latest_backup()
        if latest is None:
            return
        keys = tf.train.load_checkpoint(latest).get_variable_to_shape_map()
        saved_legacy = any(".OPTIMIZER_SLOT/" in k or "/optimizer/iter/" in k for k in keys)
        saved_new = any("/optimizer/_iterations/" in k for k in keys)
        legacy = isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer)
        if (saved_new and not saved_legacy and legacy) or (saved_legacy and not saved_new and not legacy):
            kinds = ("tf.keras.optimizers.legacy", "tf.keras.optimizers")
            saved, wanted = (kinds[1], kinds[0]) if legacy else kinds
            raise ConfigError(
                f"{self.path} cannot resume: its training state was written with an optimizer from "
                f"{saved} (an earlier keras_bdgm), and this one trains with {wanted} "
                f"({type(optimizer).__name__}), whose state it cannot read. Finish the run with the "
                "keras_bdgm that started it, or pass --overwrite to train it again."
            )

    def restore_training_state(self, model):
        """Loads the state at the end of training (the backup) into compiled `model`."""
        latest = self._latest_backup()
        if latest is None:
            raise ConfigError(
                f"{self.path} finished training, but its training state ({self.file(BACKUP_DIR)}) "
                "is gone; pass --overwrite to train again."
            )
        build_optimizer(model.optimizer, model.trainable_variables)  # its slots, to read into
        tf.train.Checkpoint(model=model).read(latest).expect_partial()


def load_model(model_dir_or_file):
    """Loads `model.keras` from a run's folder (or a .keras path) with plain Keras.

    Raises:
      RunNotFoundError: no saved model there (the message says what the folder holds).
    """
    path = str(model_dir_or_file)
    if path.endswith(".keras") and not os.path.isdir(path):
        folder = os.path.dirname(path)
    else:
        folder, path = path, os.path.join(path, KERAS_FILE)
    if not os.path.exists(path):
        state = Run(folder).stored_state() if os.path.isdir(folder) else None
        raise RunNotFoundError(
            f"{folder} holds an unfinished run (phase {state['phase']}); finish it by running "
            "examples/train.py again with its flags." if state else
            f"No saved model in {folder or '.'} (no {KERAS_FILE}); pass the --model_dir of a "
            "finished run, or train one with examples/train.py --model_dir=..."
        )
    return tf.keras.models.load_model(path)

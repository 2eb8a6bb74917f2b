"""The runs: the machinery that trains a model, stores its run folder and reports on it.

- `experiment`: `train(TrainConfig(...))`, the whole run behind `examples/train.py`
  (build, data-dependent init, `model.fit`, evaluation, report, samples, packed file).
- `train_config`: `TrainConfig`, one frozen, validated description of a run.
- `recipes`: each model's training recipe (optimizer, learning rate, skip bound, init
  batches) and `build_model`.
- `run_data`: the run's splits as datasets (training, validation, evaluation, init batch).
- `run_dir`: the run folder (`run.json`, phases, checkpoints, finished files) and
  `load_model`.
- `strategies`: `tf.distribute` strategies by name.
- `callbacks`, `validation`, `schedules`: Keras callbacks (progress, divergence stop,
  checkpoints, the validation curve) and registered learning-rate schedules.
- `reports`: the report, samples and packed model a finished run writes.
- `tuning`: width searches with keras-tuner.
- `cli`: the absl flags the example scripts share, and one-line errors.
- `errors`: the user errors (`UserError` and its kinds) that the scripts print as one line.

The runs import the library (`keras_bdgm.layers`, `blocks`, `bijectors`, `models`, ...)
and `keras_bdgm.datasets`; they never import the products (`keras_bdgm.compression`,
`keras_bdgm.pretrained`), and the library never imports them.
"""

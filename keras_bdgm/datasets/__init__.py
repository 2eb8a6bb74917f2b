"""Dataset sources behind `keras_bdgm.data.load`, one module per source.

- `fashion_mnist`: a tfds builder that prepares the standard `fashion_mnist` dataset
  offline from the four idx `.gz` files (Debian package `dataset-fashion-mnist`).
- `folder`: a folder of same-sized PNG/JPEG images as a `tf.data.Dataset`.

Both modules import their heavy dependencies (tensorflow-datasets, PIL) when first used,
so `import keras_bdgm.datasets` is cheap.
"""

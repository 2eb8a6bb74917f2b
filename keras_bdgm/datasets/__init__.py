"""Dataset sources behind `keras_bdgm.data`, one module per job.

- `source`: `Source`, what every dataset offers: `image_shape(split)`,
  `num_examples(split)`, `has_split(name)` and `load(split, batch_size, ...)`.
- `splits`: the one parser of split strings ("train", "train[:90%]", "test[:1000]"),
  with tensorflow-datasets' slicing and rounding, used by every source.
- `tfds`: `TfdsSource`, tensorflow-datasets datasets (image shapes, split aliases,
  preparing and downloading, `manual_dir`, downsampled ImageNet).
- `fashion_mnist`: a tfds builder that prepares the standard `fashion_mnist` dataset
  offline from the four idx `.gz` files (Debian package `dataset-fashion-mnist`).
- `folder`: `FolderSource`, a folder of same-sized PNG/JPEG images.

`keras_bdgm.data.resolve(name)` picks the source for a dataset name. The modules import
their heavy dependencies (tensorflow-datasets, PIL) when first used, except
`fashion_mnist`, which `tfds` imports only to prepare Fashion-MNIST.

#### Examples

```python
from keras_bdgm.datasets import folder, splits, tfds

splits.parse("train[90%:]").bounds(1000)            # (900, 1000)
tfds.TfdsSource("cifar10").image_shape()            # (32, 32, 3)
folder.FolderSource("/data/pngs").num_examples("train")
```
"""

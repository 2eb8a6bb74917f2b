"""Tests of keras_bdgm.datasets: tfds Fashion-MNIST from Debian's files, image folders, splits,
sources resolved once, errors.

The oracle for Fashion-MNIST is a direct numpy parse of the idx `.gz` files; for folders,
the arrays the test writes as PNGs; for splits, Python's slicing of a range and
tensorflow-datasets' own split arithmetic. A machine without internet is simulated through
the public seams: `datasets.SOURCES` (the registry of sources) and `TfdsSource(reachable=...)`.
"""

import collections
import functools
import gzip
import itertools
import os
import struct
import time
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_bdgm import datasets
from keras_bdgm.datasets import fashion_mnist, folder, splits
from keras_bdgm.datasets import tfds as tfds_source

DEBIAN = fashion_mnist.DEBIAN_DIR


def _idx_oracle(path):
    """Parses an idx file by its generic header: 0, 0, dtype 0x08, ndim, ndim big-endian dims."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    assert raw[0] == 0 and raw[1] == 0 and raw[2] == 0x08
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


@pytest.fixture(scope="session")
def oracle():
    if fashion_mnist.missing_files(DEBIAN):
        pytest.skip(f"Fashion-MNIST files not in {DEBIAN}: apt-get install dataset-fashion-mnist")
    return {
        split: tuple(_idx_oracle(os.path.join(DEBIAN, f)) for f in (images, labels))
        for split, (images, labels) in fashion_mnist.FILES.items()
    }


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory, oracle):
    """A tfds data_dir where `datasets.load` prepared fashion_mnist automatically (the cost here)."""
    del oracle  # only for the skip
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    start = time.perf_counter()
    datasets.load("fashion_mnist", "test", 10, data_dir=data_dir, download=False)
    print(f"\nprepared fashion_mnist from {DEBIAN} in {time.perf_counter() - start:.1f} s")
    return data_dir


def _as_numpy(ds):
    return np.concatenate([batch.numpy() for batch in ds])


def _offline(monkeypatch, reachable, names=datasets.KNOWN_DATASETS):
    """Registers tfds sources whose download hosts answer `reachable(host)` (a stub)."""
    for name in names:
        monkeypatch.setitem(datasets.SOURCES, name, functools.partial(tfds_source.TfdsSource, reachable=reachable))


# ----------------------------------------------------------------------------- Fashion-MNIST


def _records(images, labels):
    """The multiset of (image bytes, label) pairs: tfds stores examples in a hashed order."""
    return collections.Counter(zip((img.tobytes() for img in images), labels.tolist()))


def _stored(data_dir, split):
    """Images and labels of `split` in tfds's stored order, read by tfds's own builder."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
    return arrays["image"], arrays["label"]


def test_fashion_mnist_prepared_matches_idx_files(fmnist_dir, oracle):
    import tensorflow_datasets as tfds

    # The standard tfds builder (not ours) reads what was prepared.
    builder = tfds.builder("fashion_mnist", data_dir=fmnist_dir)
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == 60000
    assert builder.info.splits["test"].num_examples == 10000
    assert builder.info.features["image"].shape == (28, 28, 1)
    assert builder.info.features["label"].num_classes == 10

    for split, count in (("test", 10000), ("train", 60000)):
        images, labels = _stored(fmnist_dir, split)
        assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8
        assert _records(images[..., 0], labels) == _records(*oracle[split])


def test_load_fashion_mnist_test_split_in_stored_order(fmnist_dir):
    stored = _stored(fmnist_dir, "test")[0]
    ds = datasets.load("fashion_mnist", "test", 384, data_dir=fmnist_dir)
    sizes = [int(b.shape[0]) for b in ds]
    assert sizes == [384] * (10000 // 384) + [10000 % 384]
    spec = ds.element_spec
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 28, 28, 1]
    np.testing.assert_array_equal(_as_numpy(ds), stored)

    dropped = datasets.load("fashion_mnist", "test", 384, data_dir=fmnist_dir, drop_remainder=True)
    assert dropped.element_spec.shape.as_list() == [384, 28, 28, 1]
    assert sum(1 for _ in dropped) == 10000 // 384


def test_load_fashion_mnist_train_is_shuffled(fmnist_dir):
    head = _stored(fmnist_dir, "train[:500]")[0][..., 0]
    ds = datasets.load("fashion_mnist", "train", 100, data_dir=fmnist_dir, limit=500, seed=1)
    epoch1, epoch2 = _as_numpy(ds)[..., 0], _as_numpy(ds)[..., 0]
    assert epoch1.shape == (500, 28, 28)
    # The same 500 images (the first 500 stored), in another order, new each epoch.
    key = lambda x: sorted(img.tobytes() for img in x)  # noqa: E731
    assert key(epoch1) == key(head) == key(epoch2)
    assert not np.array_equal(epoch1, head)
    assert not np.array_equal(epoch1, epoch2)
    # shuffle=False keeps the stored order.
    plain = datasets.load("fashion_mnist", "train", 100, data_dir=fmnist_dir, limit=500, shuffle=False)
    np.testing.assert_array_equal(_as_numpy(plain)[..., 0], head)


def test_prepared_fashion_mnist_needs_no_source_files(fmnist_dir, monkeypatch, tmp_path):
    stored = _stored(fmnist_dir, "test[:64]")[0]
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path))  # empty
    _offline(monkeypatch, lambda host: pytest.fail("no network needed"))
    ds = datasets.load("fashion_mnist", "test[:64]", 64, data_dir=fmnist_dir)
    np.testing.assert_array_equal(_as_numpy(ds), stored)


def test_read_idx_checks_files(tmp_path):
    good = tmp_path / "labels.gz"
    good.write_bytes(gzip.compress(struct.pack(">II", 2049, 3) + bytes([7, 0, 9])))
    np.testing.assert_array_equal(fashion_mnist.read_idx(good), [7, 0, 9])
    raw = tmp_path / "images"  # uncompressed works too
    raw.write_bytes(struct.pack(">IIII", 2051, 2, 1, 2) + bytes([1, 2, 3, 4]))
    np.testing.assert_array_equal(fashion_mnist.read_idx(raw), [[[1, 2]], [[3, 4]]])
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">II", 2049, 5) + bytes([1, 2]))
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(short)
    bad = tmp_path / "bad"
    bad.write_bytes(struct.pack(">II", 1234, 0))
    with pytest.raises(ValueError, match="magic"):
        fashion_mnist.read_idx(bad)


# ----------------------------------------------------------------------------- missing data


def test_missing_fashion_mnist_says_how_to_get_it(monkeypatch, tmp_path):
    empty = tmp_path / "no_debian"
    empty.mkdir()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(empty))
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError) as info:
        datasets.load("fashion_mnist", "train", 8, data_dir=data_dir, download=False)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(empty) in message and data_dir in message and "manual_dir" in message

    # With downloads allowed but no internet: fails at once, and says so.
    hosts = []
    _offline(monkeypatch, lambda host: hosts.append(host) or False)
    with pytest.raises(FileNotFoundError, match="cannot be reached") as info:
        datasets.load("fashion_mnist", "train", 8, data_dir=data_dir)
    assert hosts and "apt-get install dataset-fashion-mnist" in str(info.value)

    # A manual_dir without the files names them.
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz") as info:
        datasets.load("fashion_mnist", "train", 8, data_dir=data_dir, manual_dir=str(empty))
    assert str(empty) in str(info.value)


def test_missing_downloads_and_manual_files(monkeypatch, tmp_path):
    data_dir = str(tmp_path / "tfds")
    _offline(monkeypatch, lambda host: False)
    with pytest.raises(FileNotFoundError, match="internet") as info:
        datasets.load("cifar10", "train", 8, data_dir=data_dir)
    assert data_dir in str(info.value)
    with pytest.raises(FileNotFoundError, match="download=False"):
        datasets.load("mnist", "test", 8, data_dir=data_dir, download=False)
    for size in ("32x32", "64x64"):
        with pytest.raises(FileNotFoundError, match="manual_dir") as info:
            datasets.load(f"downsampled_imagenet/{size}", "train", 8, data_dir=data_dir)
        assert f"train_{size}.tar" in str(info.value) and f"valid_{size}.tar" in str(info.value)
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "train_32x32.tar").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        datasets.load("downsampled_imagenet/32x32", "test", 8, data_dir=data_dir, manual_dir=manual)
    assert "valid_32x32.tar" in str(info.value) and "train_32x32.tar," not in str(info.value)
    assert str(manual) in str(info.value)
    # Downsampled ImageNet's held-out split is "validation"; "test" reads it.
    assert datasets.resolve("downsampled_imagenet/64x64").tfds_split("test[:10%]") == "validation[:10%]"
    assert datasets.resolve("cifar10").tfds_split("test[:10%]") == "test[:10%]"


def test_unknown_names_list_the_known_ones():
    for call in (lambda: datasets.load("cifar100", "train", 8), lambda: datasets.image_shape("imagenet")):
        with pytest.raises(ValueError) as info:
            call()
        for name in datasets.KNOWN_DATASETS:
            assert name in str(info.value)
        assert "folder:" in str(info.value)


def test_image_shapes_without_loading():
    assert datasets.image_shape("fashion_mnist") == (28, 28, 1)
    assert datasets.image_shape("mnist") == (28, 28, 1)
    assert datasets.image_shape("cifar10") == (32, 32, 3)
    assert datasets.image_shape("downsampled_imagenet/32x32") == (32, 32, 3)
    assert datasets.image_shape("downsampled_imagenet/64x64") == (64, 64, 3)
    assert set(datasets.KNOWN_DATASETS) == {
        "fashion_mnist", "mnist", "cifar10",
        "downsampled_imagenet/32x32", "downsampled_imagenet/64x64",
    }


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        datasets.load("fashion_mnist", "train", 0)
    with pytest.raises(ValueError, match="limit"):
        datasets.load("fashion_mnist", "train", 8, limit=0)


# ----------------------------------------------------------------------------- folders


def _write(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)


def test_folder_grey_and_rgb_exact_pixels(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(5, 6, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    (tmp_path / "grey").mkdir()
    (tmp_path / "rgb").mkdir()
    for i, img in enumerate(grey):
        _write(tmp_path / "grey" / f"{i:02d}.png", img)
    for i, img in enumerate(rgb):
        _write(tmp_path / "rgb" / f"img{i}.PNG", img)
    (tmp_path / "grey" / "notes.txt").write_text("not an image")

    for sub, expected in (("grey", grey[..., None]), ("rgb", rgb)):
        name = f"folder:{tmp_path / sub}"
        assert datasets.image_shape(name) == expected.shape[1:]
        ds = datasets.load(name, "train", 2, shuffle=False)
        assert ds.element_spec.dtype == tf.uint8
        assert ds.element_spec.shape.as_list() == [None, *expected.shape[1:]]
        batches = [b.numpy() for b in ds]
        assert [len(b) for b in batches] == [2] * (len(expected) // 2) + [1] * (len(expected) % 2)
        np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_folder_palette_and_jpeg(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    palette = Image.fromarray(img).quantize(16)
    palette.save(tmp_path / "p.png")
    (ds,) = list(datasets.load(f"folder:{tmp_path}", "train", 4, shuffle=False))
    np.testing.assert_array_equal(ds.numpy()[0], np.asarray(palette.convert("RGB")))

    jpg = tmp_path / "jpg"
    jpg.mkdir()
    grey = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    Image.fromarray(grey).save(jpg / "a.jpg", quality=95)
    (batch,) = list(datasets.load(f"folder:{jpg}", "train", 4))
    decoded = np.asarray(Image.open(jpg / "a.jpg"))
    assert batch.shape == (1, 16, 16, 1)
    np.testing.assert_array_equal(batch.numpy()[0, ..., 0], decoded)  # PIL's libjpeg decode


def test_folder_splits_and_slices(tmp_path):
    imgs = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)
    for i, img in enumerate(imgs):
        _write(tmp_path / f"{i}.png", img)
    name = f"folder:{tmp_path}"
    head = _as_numpy(datasets.load(name, "train[:70%]", 100, shuffle=False))[..., 0]
    tail = _as_numpy(datasets.load(name, "train[70%:]", 100, shuffle=False))[..., 0]
    np.testing.assert_array_equal(head, imgs[:7])
    np.testing.assert_array_equal(tail, imgs[7:])
    last = _as_numpy(datasets.load(name, "train[-2:]", 100, shuffle=False))[..., 0]
    np.testing.assert_array_equal(last, imgs[8:])
    limited = _as_numpy(datasets.load(name, "train", 3, shuffle=False, limit=4))[..., 0]
    np.testing.assert_array_equal(limited, imgs[:4])
    with pytest.raises(ValueError, match="sub-folder"):
        datasets.load(name, "test", 4)

    (tmp_path / "test").mkdir()
    _write(tmp_path / "test" / "x.png", np.full((3, 3), 200, np.uint8))
    assert datasets.image_shape(name, "test") == (3, 3, 1)
    np.testing.assert_array_equal(_as_numpy(datasets.load(name, "test", 4)), np.full((1, 3, 3, 1), 200))


def test_folder_train_is_shuffled(tmp_path):
    imgs = np.arange(40, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    for i, img in enumerate(imgs):
        _write(tmp_path / f"{i:03d}.png", img)
    train = _as_numpy(datasets.load(f"folder:{tmp_path}", "train", 8, seed=3))[:, 0, 0, 0]
    assert sorted(train.tolist()) == list(range(40))
    assert train.tolist() != list(range(40))


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load(f"folder:{tmp_path / 'nope'}", "train", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No PNG/JPEG"):
        datasets.load(f"folder:{tmp_path / 'empty'}", "train", 4)
    with pytest.raises(ValueError, match="No PNG/JPEG"):
        datasets.image_shape(f"folder:{tmp_path / 'empty'}")

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write(mixed / "a.png", np.zeros((4, 4), np.uint8))
    _write(mixed / "b.png", np.zeros((4, 4), np.uint8))
    _write(mixed / "c.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="one height x width") as info:
        datasets.load(f"folder:{mixed}", "train", 4)
    assert "4x4x1: 2 file" in str(info.value) and "4x5x1: 1 file" in str(info.value)

    channels = tmp_path / "channels"
    channels.mkdir()
    _write(channels / "a.png", np.zeros((4, 4), np.uint8))
    _write(channels / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="4x4x3"):
        datasets.image_shape(f"folder:{channels}")

    deep = tmp_path / "deep"
    deep.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(deep / "a.png")  # 16-bit grey
    with pytest.raises(ValueError, match="mode"):
        datasets.load(f"folder:{deep}", "train", 4)
    with pytest.raises(ValueError, match="folder:/path"):
        datasets.load("folder:", "train", 4)
    with pytest.raises(ValueError, match="parse"):
        splits.parse("train[a:b]")


def test_damaged_images_are_found_by_the_scan_and_each_named(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        _write(tmp_path / f"{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    whole = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(whole[:-12])  # no IEND: PIL reads it, TensorFlow does not
    (tmp_path / "3.png").write_bytes(whole[: len(whole) // 2])  # cut in the middle of the pixels
    with pytest.raises(ValueError) as info:
        datasets.image_shape(f"folder:{tmp_path}")
    message = str(info.value)
    assert "2 of the 4 images" in message and "Remove or replace them" in message
    assert "1.png: cannot be decoded" in message and "3.png: cannot be decoded" in message
    assert "0.png" not in message and "2.png" not in message
    (tmp_path / "1.png").write_bytes(whole)  # repaired: scanned again (new size and time)
    (tmp_path / "3.png").unlink()
    assert datasets.image_shape(f"folder:{tmp_path}") == (8, 8, 1)
    assert _as_numpy(datasets.load(f"folder:{tmp_path}", "train", 8, shuffle=False)).shape == (3, 8, 8, 1)


# ----------------------------------------------------------------------------- splits

SIZES = (0, 1, 3, 7, 10, 99, 100, 101, 1000, 60000)


def _tfds_oracle(spec, size):
    """Indices tensorflow-datasets reads for `spec` out of `size` examples, or its ValueError."""
    import tensorflow_datasets as tfds

    (instruction,) = tfds.core.ReadInstruction.from_spec(spec).to_absolute(
        {"train": types.SimpleNamespace(num_examples=size)}
    )
    start = 0 if instruction.from_ is None else instruction.from_
    end = size if instruction.to is None else instruction.to
    return list(range(size))[start:end]


def _ours(spec, size):
    return splits.parse(spec).select(list(range(size)))


def _outcome(function, *args):
    try:
        return function(*args)
    except ValueError:
        return ValueError


def _specs(size):
    counts = sorted({0, 1, 2, size // 3, size - 1, size, size + 1, -1, -2, -(size // 2), -size, -size - 1})
    percents = (0, 1, 10, 12.5, 15, 25, 33.3, 35, 50, 66.7, 90, 99.5, 100, -10, -25, -33.3, -100)
    for unit, values in (("", counts), ("%", percents)):
        bounds = [None] + [f"{v:g}{unit}" for v in values]
        for start, end in itertools.product(bounds, bounds):
            if start is not None or end is not None:
                yield f"train[{start or ''}:{end or ''}]"


def test_split_slices_match_tfds_and_python_slicing():
    checked = 0
    for size in SIZES:
        for spec in _specs(size):
            ours, theirs = _outcome(_ours, spec, size), _outcome(_tfds_oracle, spec, size)
            assert ours == theirs, (spec, size)
            parsed = splits.parse(spec)
            if ours is not ValueError and not parsed.percent:  # counts: Python's own slicing
                assert ours == list(range(size))[parsed.start : parsed.end], (spec, size)
            if ours is not ValueError:
                assert parsed.count(size) == len(ours)
                assert _tfds_oracle(str(parsed), size) == ours  # the canonical spelling reads the same
            checked += 1
    assert checked > 2000


def test_split_percents_round_like_tfds():
    # round(p * n / 100), halves to even: 2.5 -> 2, 3.5 -> 4, 1.5 -> 2, -2.5 -> -2.
    assert splits.parse("train[:25%]").bounds(10) == (0, 2)
    assert splits.parse("train[:35%]").bounds(10) == (0, 4)
    assert splits.parse("train[:15%]").bounds(10) == (0, 2)
    assert splits.parse("train[-25%:]").bounds(10) == (8, 10)
    assert splits.parse("train[90%:]").bounds(60000) == (54000, 60000)
    assert splits.parse("train[:33.3%]").count(1000) == 333
    for spec in ("train[:25%]", "train[:35%]", "train[:15%]", "train[-25%:]"):
        assert _ours(spec, 10) == _tfds_oracle(spec, 10)


def test_split_parsing_and_spelling():
    assert splits.parse("train") == splits.Split("train")
    assert splits.parse(" test [ -100 : ] ") == splits.Split("test", -100, None, False)
    assert splits.parse("train[:90%]") == splits.Split("train", None, 90.0, True)
    assert splits.parse("train[:]") == splits.Split("train")  # tfds refuses it; the whole split
    for spec in ("train", "train[:90%]", "train[90%:]", "train[:1000]", "test[-100:]", "train[10%:33.3%]"):
        assert str(splits.parse(spec)) == spec
        assert splits.parse(str(splits.parse(spec))) == splits.parse(spec)
    assert str(splits.parse("test[:10%]").renamed("validation")) == "validation[:10%]"
    assert splits.is_training("train[90%:]") and not splits.is_training("test")
    assert splits.complement("train[90%:]") == "train[:90%]"
    assert splits.complement("train[:1000]") == "train[1000:]"
    assert splits.complement("train") is None and splits.complement("train[10%:90%]") is None
    assert datasets.is_training_split("train[:90%]") and not datasets.is_training_split("test[:10%]")


def test_bad_splits_raise_clear_value_errors():
    rejected_by_tfds_too = {
        "train[a:b]": "parse slice bound 'a'",
        "train[5]": "one slice",
        "train[::2]": "one slice",
        "train[:150%]": "outside -100%..100%",
        "train[:1.5]": "whole number",
        "": "Cannot parse split",
        "train[:90%": "Cannot parse split",
    }
    for spec, message in rejected_by_tfds_too.items():
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
            splits.parse(spec)
        assert _outcome(_tfds_oracle, spec, 100) is ValueError, spec
    with pytest.raises(ValueError, match="mixes a count and a percent"):
        splits.parse("train[10:50%]")  # tfds would read 10% to 50%
    with pytest.raises(ValueError, match="is a string"):
        splits.parse(3)
    with pytest.raises(ValueError, match=r"reaches example 11, but split 'train' of here holds only 10"):
        splits.parse("train[:11]").bounds(10, of="here")


# ----------------------------------------------------------------------------- sources


class _ArraySource(datasets.Source):
    """A `Source` over in-memory arrays: {split name: uint8 [N, H, W, C]}."""

    def __init__(self, name, arrays):
        self.name, self.arrays = name, arrays

    def image_shape(self, split="train"):
        return self.arrays[splits.parse(split).name].shape[1:]

    def num_examples(self, split):
        parsed = splits.parse(split)
        return parsed.count(len(self.arrays[parsed.name]))

    def has_split(self, name):
        return name in self.arrays

    def read(self, split, *, shuffle=False, seed=None, limit=None):
        parsed = splits.parse(split)
        images = parsed.select(self.arrays[parsed.name])[:limit]
        return tf.data.Dataset.from_tensor_slices(images)


def test_registry_dispatches_names_and_prefixes(monkeypatch):
    arrays = {"train": np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2, 1)}
    made = []

    def factory(name, data_dir=None, manual_dir=None, download=True):
        made.append((name, data_dir, manual_dir, download))
        return _ArraySource(name, arrays)

    monkeypatch.setitem(datasets.SOURCES, "mem:", factory)
    source = datasets.resolve("mem:a", data_dir="d", manual_dir="m")
    assert isinstance(source, datasets.Source) and made == [("mem:a", "d", "m", True)]
    assert datasets.resolve(source) is source
    assert datasets.image_shape("mem:x") == (2, 2, 1)
    np.testing.assert_array_equal(_as_numpy(datasets.load("mem:x", "train[:70%]", 3, shuffle=False)), arrays["train"][:7])
    np.testing.assert_array_equal(_as_numpy(datasets.load(source, "train", 4, limit=5, shuffle=False)), arrays["train"][:5])
    shuffled = _as_numpy(datasets.load(source, "train", 4, seed=2))  # a training split: shuffled
    assert sorted(shuffled.reshape(10, -1).tolist()) == arrays["train"].reshape(10, -1).tolist()
    assert not np.array_equal(shuffled, arrays["train"])
    # No test split: train_and_eval_splits still defaults to "test" (a Source's default).
    assert datasets.train_and_eval_splits(source) == ("train", "test", None)
    assert datasets.train_and_eval_splits(source, eval_split="train[95%:]") == ("train[:95%]", "train[95%:]", None)
    with pytest.raises(ValueError, match="lies in the training data"):
        datasets.train_and_eval_splits(source, eval_split="train[10%:20%]")
    for bad in ("mem", "cifar100", None):
        with pytest.raises(ValueError, match="Unknown dataset"):
            datasets.resolve(bad)


def test_tfds_sources_know_their_splits_without_data():
    cifar = datasets.resolve("cifar10", data_dir="/nonexistent")
    assert isinstance(cifar, tfds_source.TfdsSource) and cifar.name == "cifar10"
    assert cifar.image_shape("test[:10%]") == (32, 32, 3)  # reads nothing
    assert cifar.has_split("test") and not cifar.has_split("validation")
    with pytest.raises(ValueError, match="no split 'valid'.*train, test"):
        cifar.image_shape("valid")
    imagenet = datasets.resolve("downsampled_imagenet/32x32")
    assert imagenet.has_split("test") and imagenet.has_split("validation")
    assert imagenet.tfds_split("test") == "validation" and imagenet.tfds_split("train[:1%]") == "train[:1%]"
    assert datasets.train_and_eval_splits("downsampled_imagenet/32x32") == ("train", "test", None)
    with pytest.raises(ValueError, match="Unknown tfds dataset"):
        tfds_source.TfdsSource("cifar100")


def test_tfds_source_counts_splits_like_tfds_and_prepares_once(fmnist_dir, monkeypatch):
    import tensorflow_datasets as tfds

    builders = []
    real = tfds.builder
    monkeypatch.setattr(tfds, "builder", lambda *a, **k: builders.append(a) or real(*a, **k))
    source = datasets.resolve("fashion_mnist", data_dir=fmnist_dir, download=False)
    info = real("fashion_mnist", data_dir=fmnist_dir).info
    for spec in ("train", "test", "train[:90%]", "train[90%:]", "test[:33.3%]", "test[-25%:]", "train[:1000]"):
        assert source.num_examples(spec) == info.splits[spec].num_examples, spec
    assert _as_numpy(source.load("test[:3%]", 100)).shape == (300, 28, 28, 1)
    assert len(builders) == 1 and source.builder() is source.builder()
    with pytest.raises(ValueError, match="holds only 10000"):
        source.num_examples("test[:10001]")


def test_folder_source_scans_once(tmp_path, monkeypatch):
    imgs = np.arange(10 * 3 * 3, dtype=np.uint8).reshape(10, 3, 3)
    for i, img in enumerate(imgs):
        _write(tmp_path / f"{i}.png", img)
    scanned = []
    real = folder.scan
    monkeypatch.setattr(folder, "scan", lambda path, *a: scanned.append(path) or real(path, *a))
    source = datasets.resolve(f"folder:{tmp_path}")
    assert isinstance(source, folder.FolderSource) and scanned == []  # resolving reads nothing
    assert source.image_shape("train") == (3, 3, 1)
    assert source.num_examples("train[:90%]") == 9 and source.num_examples("train[90%:]") == 1
    held_out = _as_numpy(source.load("train[90%:]", 4))
    train = _as_numpy(source.load("train[:90%]", 4, shuffle=False))
    _as_numpy(source.load("train", 4, limit=2))  # an init batch
    assert scanned == [str(tmp_path)]  # one scan for all of it
    np.testing.assert_array_equal(np.concatenate([train, held_out])[..., 0], imgs)
    assert source.default_eval_split() == ("train[90%:]", f"{tmp_path} has no test/ sub-folder: evaluated "
                                           "on its last 10% (train[90%:]), trained on the rest")
    # The scan is the source's: a new image shows in a new source only.
    _write(tmp_path / "99.png", imgs[0])
    assert source.num_examples("train") == 10
    assert datasets.resolve(f"folder:{tmp_path}").num_examples("train") == 11
    # A slice past the end is refused, as tfds refuses it.
    with pytest.raises(ValueError, match="holds only 10"):
        source.load("train[:20]", 4)
    with pytest.raises(ValueError, match="selects no images"):
        source.num_examples("train[5:5]")


def test_flat_folder_eval_split_and_note(tmp_path):
    _write(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    name = f"folder:{tmp_path}"
    train, evaluation, note = datasets.train_and_eval_splits(name)
    assert (train, evaluation) == datasets.HELD_OUT == ("train[:90%]", "train[90%:]")
    assert note.startswith(f"{tmp_path} has no test/ sub-folder") and "last 10%" in note
    (tmp_path / "test").mkdir()
    assert datasets.train_and_eval_splits(name) == ("train", "test", None)
    with pytest.raises(ValueError, match="names no folder"):
        datasets.resolve("folder:")

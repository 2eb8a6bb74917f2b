"""footprint counts by hand and against larq; the packed format round trip and its errors."""

import os

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from keras_bdgm import layers, memory


def _small_model():
    return tf.keras.Sequential([
        tf.keras.Input((6, 6, 2)),
        layers.WNConv2D(4, 3, padding="same"),                             # 72 + 4 + 4 real
        layers.BWNConv2D(8, 3, padding="same", input_quantizer="ste_sign"),  # 288 binary, 16 real
        tf.keras.layers.Flatten(),
        layers.BWNDense(5, use_bias=False),                                # 1440 binary, 5 real
        tf.keras.layers.Dense(3),                                          # 15 + 3 real
    ])


def test_footprint_matches_hand_count():
    fp = memory.footprint(_small_model())
    binary = 3 * 3 * 4 * 8 + 6 * 6 * 8 * 5
    real = (3 * 3 * 2 * 4 + 4 + 4) + (8 + 8) + 5 + (5 * 3 + 3)
    assert (fp.binary_weights, fp.real_parameters) == (binary, real)
    assert fp.bits == binary + 32 * real
    assert fp.bytes == -(-(binary + 32 * real) // 8)
    assert fp.float32_bytes == 4 * (binary + real)
    assert fp.ratio == pytest.approx(4 * (binary + real) / fp.bytes)
    assert fp.binary_share == pytest.approx(binary / (binary + real))


def test_footprint_agrees_with_larq_summary():
    model = _small_model()
    profile = lq.models.ModelProfile(model)
    fp = memory.footprint(model)
    assert fp.binary_weights == profile.weight_count(bitwidth=1)
    assert fp.real_parameters == profile.weight_count(bitwidth=32)
    assert fp.bits == profile.memory


def _big_binary_model():
    return tf.keras.Sequential([
        tf.keras.Input((8, 8, 64)),
        layers.BWNConv2D(64, 3, padding="same"),
        layers.BWNConv2D(64, 3, padding="same", input_quantizer="ste_sign"),
        layers.WNConv2D(3, 1),
    ])


def test_packed_round_trip_is_bit_identical_and_near_the_one_bit_floor(tmp_path):
    tf.keras.utils.set_random_seed(1)
    model = _big_binary_model()
    for w in model.weights:
        target = getattr(w, "latent_variable", w)
        target.assign(np.random.default_rng(0).uniform(-1, 1, size=w.shape).astype("float32"))
    path = str(tmp_path / "m.bdgm")
    written = memory.save_packed(model, path)
    assert written == os.path.getsize(path)
    fp = memory.footprint(model)
    assert fp.bytes <= written <= 1.01 * fp.bytes + 512

    tf.keras.utils.set_random_seed(2)
    fresh = _big_binary_model()
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 64)).astype("float32")
    assert not np.array_equal(fresh(x).numpy(), model(x).numpy())
    memory.load_packed(fresh, path)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())
    # Signs are kept exactly; latent magnitudes are not stored.
    for a, b in zip(model.weights, fresh.weights):
        if memory.is_binary(a):
            np.testing.assert_array_equal(
                np.where(a.latent_variable.numpy() >= 0, 1.0, -1.0), b.latent_variable.numpy()
            )


def test_load_into_other_architecture_names_first_mismatch(tmp_path):
    path = str(tmp_path / "m.bdgm")
    memory.save_packed(_small_model(), path)
    other = tf.keras.Sequential([
        tf.keras.Input((6, 6, 2)),
        layers.WNConv2D(4, 3, padding="same"),
        layers.BWNConv2D(6, 3, padding="same"),
    ])
    with pytest.raises(ValueError, match=r"weight #3 'bwn_conv2d_\d+/kernel:0'"):
        memory.load_packed(other, path)
    shorter = tf.keras.Sequential([tf.keras.Input((6, 6, 2)), layers.WNConv2D(4, 3, padding="same")])
    with pytest.raises(ValueError, match="holds 10 weights, model .* has 3"):
        memory.load_packed(shorter, path)


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:-10], "truncated"),
    (lambda b: b[:10], "not a keras_bdgm packed file|truncated"),
    (lambda b: b"XXXXXXXX" + b[8:], "not a keras_bdgm packed file"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "CRC-32"),
    (lambda b: b[:30] + bytes([b[30] ^ 0xFF]) + b[31:], "corrupt header"),
])
def test_damaged_files_fail_clearly(tmp_path, damage, message):
    model = _small_model()
    path = tmp_path / "m.bdgm"
    memory.save_packed(model, str(path))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        memory.load_packed(_small_model(), str(path))


def test_unbuilt_model_is_rejected(tmp_path):
    model = tf.keras.Sequential([layers.WNConv2D(2, 3)])
    with pytest.raises(ValueError, match="no weights yet"):
        memory.footprint(model)
    with pytest.raises(ValueError, match="no weights yet"):
        memory.save_packed(model, str(tmp_path / "x"))


def test_metric_state_is_not_counted_or_packed(tmp_path):
    class WithTracker(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.BWNConv2D(2, 3)
            self.tracker = tf.keras.metrics.Mean("loss")

        def call(self, x):
            return self.conv(x)

    def build(seed):
        tf.keras.utils.set_random_seed(seed)
        model = WithTracker()
        model(np.zeros((1, 4, 4, 1), "float32"))
        return model

    model = build(1)
    assert len(model.weights) > 3  # Keras lists the tracker's total and count
    fp = memory.footprint(model)
    assert (fp.binary_weights, fp.real_parameters) == (18, 4)
    model.tracker.update_state([2.0, 4.0])  # total 6, count 2
    path = tmp_path / "m.bdgm"
    written = memory.save_packed(model, str(path))
    # The file holds the conv's kernel (as signs), gain and bias, nothing of the tracker.
    entries, payload = memory._read(str(path))  # pylint: disable=protected-access
    assert [(e["kind"], e["shape"]) for e in entries] == [("sign", [3, 3, 1, 2]), ("float32", [2]), ("float32", [2])]
    assert not any("total" in e["name"] or "count" in e["name"] for e in entries)
    assert len(payload) == fp.bytes == 3 + 4 * 4  # 18 signs in 3 bytes, 4 float32s
    assert written == path.stat().st_size

    # Into a model with other weights and its own tracker state: the weights come back, the
    # tracker's running totals are left as they were.
    fresh = build(2)
    fresh.tracker.update_state([10.0])
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 1)).astype("float32")
    assert not np.array_equal(fresh(x).numpy(), model(x).numpy())
    memory.load_packed(fresh, str(path))
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())
    assert (float(fresh.tracker.total), float(fresh.tracker.count)) == (10.0, 1.0)
    assert float(fresh.tracker.result()) == 10.0 and float(model.tracker.result()) == 3.0
    # Loading a model's own file back leaves its outputs and its tracker as they were.
    before = model(x).numpy()
    memory.load_packed(model, str(path))
    np.testing.assert_array_equal(model(x).numpy(), before)
    assert (float(model.tracker.total), float(model.tracker.count)) == (6.0, 2.0)

"""The `keras-bdgm-compress` command (keras_bdgm.compression.cli): PNG folders, single PNGs
and dataset splits, one file or one per image, names restored, one-line errors that write
nothing; and the command installed from a wheel into a fresh venv, outside the repository."""

import json
import os
import pathlib
import subprocess
import sys
import sysconfig
import types
import zipfile

import keras_bdgm  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest

from keras_bdgm import compression, image_grid, memory
from keras_bdgm.compression import cli, container
from keras_bdgm.models import ResNetVAE
from keras_bdgm.runs.errors import ConfigError
from wheels import build_wheel

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = dict(width=8, latent_layers=2, processing_blocks=0)
SHAPE = (8, 8, 1)


def _command(args, cwd=ROOT, executable=(sys.executable, "-m", "keras_bdgm.compression"), env=None):
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    out = subprocess.run([*executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=environ,
                         timeout=600)
    return out.returncode, out.stdout, out.stderr


def _in_process(args):
    """Runs the command's work in this process (flags as an object): (0, stdout, "") or
    (2, "", the error line), as the installed command prints them (`keras_bdgm.runs.cli`)."""
    values = dict(decompress=False, per_image=False, pretrained=None, model_dir=None, packed=None, precision=None,
                  preset=None, overrides=None, num_buckets=None, batch_size=None, elbo=False, data_dir=None)
    args = [str(a) for a in args]
    i = 0
    while i < len(args):
        key = args[i][2:]
        if key in ("decompress", "per_image", "elbo"):
            values[key] = True
            i += 1
        else:
            values[key] = args[i + 1]
            i += 2
    flags_ = types.SimpleNamespace(**values)
    try:
        lines = cli.decompress_command(flags_) if flags_.decompress else cli.compress_command(flags_)
    except ConfigError as err:
        return 2, "", f"keras-bdgm-compress: error: {err}"
    return 0, "\n".join(lines), ""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with a tiny initialized w1a1 ResNetVAE for 8x8 grey images."""
    folder = tmp_path_factory.mktemp("run")
    model = ResNetVAE(SHAPE, precision="w1a1", preset="small", **TINY)
    keras_bdgm.initialize(model, np.random.default_rng(0).integers(0, 256, (8, *SHAPE)).astype(np.uint8))
    model.save(str(folder / "model.keras"))
    memory.save_packed(model, str(folder / "model.bdgm"))
    (folder / "report.json").write_text(json.dumps({"model": "resnet_vae", "precision": "w1a1", "preset": "small",
                                                    "overrides": TINY}))
    return folder


def _pngs(folder, images, names):
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names):
        image_grid.write_png(folder / name, image)


def _read_folder(folder):
    names = sorted(os.listdir(folder))
    return names, np.stack([image_grid.read_png(folder / n) for n in names])


def test_folder_to_one_file_and_per_image_files_restore_names_exactly(run_dir, tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, *SHAPE)).astype(np.uint8)
    names = ["b.png", "a.png", "shirt 1.png", "z.PNG"]
    _pngs(tmp_path / "in", images, names)
    (tmp_path / "in" / "notes.txt").write_text("not an image")  # ignored: not a PNG
    code, out, err = _in_process(["--model_dir", run_dir, "--input", tmp_path / "in", "--output", tmp_path / "x.kbc"])
    assert code == 0, err[-3000:]
    assert "4 images of 8x8x1 in 1 file" in out and "bits/dim" in out and "encode" in out
    header, _ = container.unpack((tmp_path / "x.kbc").read_bytes())
    assert header["params"]["names"] == sorted(names)  # the folder's PNGs in sorted order
    code, out, err = _in_process(["--model_dir", run_dir, "--decompress", "--input", tmp_path / "x.kbc",
                               "--output", tmp_path / "back"])
    assert code == 0 and "wrote 4 PNGs" in out, err[-3000:]
    back_names, back = _read_folder(tmp_path / "back")
    assert back_names == sorted(names)
    order = [names.index(n) for n in back_names]
    np.testing.assert_array_equal(back, images[order])

    code, out, err = _in_process(["--model_dir", run_dir, "--per_image", "--input", tmp_path / "in",
                               "--output", tmp_path / "each"])
    assert code == 0 and "in 4 files" in out, err[-3000:]
    files = sorted(os.listdir(tmp_path / "each"))
    assert files == sorted(n[:-4] + ".kbc" for n in names)
    for name in files:  # each file at most the raw pixels plus a small header (and the name)
        size = (tmp_path / "each" / name).stat().st_size
        assert size <= int(np.prod(SHAPE)) + 24 + len(json.dumps({"names": [name]})), (name, size)
    code, out, err = _in_process(["--model_dir", run_dir, "--decompress", "--input", tmp_path / "each",
                               "--output", tmp_path / "back2"])
    assert code == 0, err[-3000:]
    back_names, back = _read_folder(tmp_path / "back2")
    assert back_names == sorted(names)
    np.testing.assert_array_equal(back, images[order])


def test_user_errors_are_one_line_and_write_nothing(run_dir, tmp_path):
    rng = np.random.default_rng(2)
    good = rng.integers(0, 256, (2, *SHAPE)).astype(np.uint8)
    _pngs(tmp_path / "wrong_size", [good[0], rng.integers(0, 256, (9, 8, 1)).astype(np.uint8)], ["a.png", "b.png"])
    _pngs(tmp_path / "rgb", [np.repeat(good[0], 3, axis=-1)], ["c.png"])
    _pngs(tmp_path / "good", good, ["a.png", "b.png"])
    other = ResNetVAE(SHAPE, precision="w1a1", preset="small", **TINY)
    keras_bdgm.initialize(other, good)
    other_file = tmp_path / "other.kbc"
    other_file.write_bytes(compression.BitsBackCodec(other).compress(good, allow_stored=False))
    (tmp_path / "cut.kbc").write_bytes(other_file.read_bytes()[:-5])
    cases = [
        (["--input", tmp_path / "wrong_size", "--output", tmp_path / "o1.kbc"], "b.png is a 8x9 PNG"),
        (["--input", tmp_path / "rgb", "--output", tmp_path / "o2.kbc"], "mode RGB"),
        (["--input", tmp_path / "missing", "--output", tmp_path / "o3.kbc"], "fashion_mnist:test"),
        (["--decompress", "--input", other_file, "--output", tmp_path / "o4"], "different model"),
        (["--decompress", "--input", tmp_path / "cut.kbc", "--output", tmp_path / "o5"], "truncated"),
        (["--per_image", "--input", tmp_path / "wrong_size", "--output", tmp_path / "o6"], "b.png"),
    ]
    for args, expected in cases[1:]:
        code, out, err = _in_process(["--model_dir", run_dir, *args])
        assert code == 2 and expected in err, (args, err)
    # the installed command prints such an error as one line and exits with status 2
    code, out, err = _command(["--model_dir", run_dir, *cases[0][0]])
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and cases[0][1] in lines[0] and "Traceback" not in err, err[-3000:]
    assert sorted(os.listdir(tmp_path)) == sorted(["wrong_size", "rgb", "good", "other.kbc", "cut.kbc"])


def test_one_png_and_a_dataset_split_with_the_default_shipped_model(tmp_path):
    """No model flag: the default shipped model codes Fashion-MNIST images; one test image
    as a PNG, and a dataset split, round-trip exactly and below the raw 8 bits/dim."""
    from keras_bdgm import datasets  # pylint: disable=import-outside-toplevel

    images = np.concatenate([np.asarray(b) for b in datasets.load("fashion_mnist", "test[:64]", 64, shuffle=False)])
    image_grid.write_png(tmp_path / "one.png", images[0])
    code, out, err = _in_process(["--input", tmp_path / "one.png", "--output", tmp_path / "one.kbc"])
    assert code == 0 and "1 images of 28x28x1" in out, err[-3000:]
    # the default model is a directly coded one: a single image costs its code plus a small
    # header, well below the raw 784 bytes (no start-up cost as with bits-back)
    one = (tmp_path / "one.kbc").read_bytes()
    assert container.unpack(one)[0]["codec"] != container.STORED
    assert len(one) < 784 * 6 // 8, len(one)  # this image: 507 bytes, 5.2 bits/dim
    code, out, err = _in_process(["--input", "fashion_mnist:test[:64]", "--output", tmp_path / "split.kbc"])
    assert code == 0, err[-3000:]
    assert (tmp_path / "split.kbc").stat().st_size < 64 * 784  # the model's code wins on its own data
    assert container.unpack((tmp_path / "split.kbc").read_bytes())[0]["codec"] != container.STORED
    for name in ("one", "split"):
        code, out, err = _in_process(["--decompress", "--input", tmp_path / f"{name}.kbc", "--output", tmp_path / name])
        assert code == 0, err[-3000:]
    np.testing.assert_array_equal(image_grid.read_png(tmp_path / "one" / "one.png"), images[0])
    names, back = _read_folder(tmp_path / "split")
    assert names == [f"{i:06d}.png" for i in range(64)]
    np.testing.assert_array_equal(back, images)


def test_the_command_from_a_wheel_in_a_fresh_venv_outside_the_repository(tmp_path):
    """pip wheel -> a new venv (its dependencies from this environment's site-packages, the
    package itself only from the wheel) -> `keras-bdgm-compress` run from another folder."""
    wheel = build_wheel(tmp_path / "wheels")
    assert "keras_bdgm/compression/cli.py" in zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (TensorFlow, larq, ...) from this environment, but not its keras_bdgm
    deps = tmp_path / "deps"
    deps.mkdir()
    here = pathlib.Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        if not entry.name.lower().startswith(("keras_bdgm", "__editable__", "_keras_bdgm", "keras-bdgm")) \
                and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    pathlib.Path(site, "zz_test_deps.pth").write_text(str(deps) + "\n")
    command = venv / "bin" / "keras-bdgm-compress"
    assert command.exists()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    image = np.random.default_rng(3).integers(0, 256, (28, 28, 1)).astype(np.uint8)
    image_grid.write_png(outside / "noise.png", image)
    env = {"PYTHONPATH": "", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    code, out, err = _command(["--input", "noise.png", "--output", "noise.kbc"], cwd=outside,
                              executable=(str(command),), env=env)
    assert code == 0, err[-3000:]
    code, out, err = _command(["--decompress", "--input", "noise.kbc", "--output", "back"], cwd=outside,
                              executable=(str(command),), env=env)
    assert code == 0, err[-3000:]
    np.testing.assert_array_equal(image_grid.read_png(outside / "back" / "noise.png"), image)
    assert (outside / "noise.kbc").stat().st_size <= 784 + 24 + len('{"names":["noise.png"]}')
    where = subprocess.run([str(python), "-c", "import keras_bdgm; print(keras_bdgm.__file__)"], cwd=outside,
                           capture_output=True, text=True, env={**os.environ, **env}).stdout
    assert where.startswith(site), where  # the wheel's copy, not the checkout


def _codable_shipped_models():
    from keras_bdgm import pretrained  # pylint: disable=import-outside-toplevel

    default = pretrained.parse_name(cli.DEFAULT_MODEL)[:2]
    return [n for n in pretrained.list() if n.split("/")[0] in ("pixelcnn", "resnet_vae")
            and tuple(n.split("/")[:2]) != default]


@pytest.mark.parametrize("name", _codable_shipped_models())
def test_decompress_finds_the_shipped_model_that_wrote_the_file(name, tmp_path):
    """A file written with a shipped model other than the default (e.g. an earlier default)
    decodes without a model flag: the command picks the model by the file's fingerprint."""
    from keras_bdgm import datasets, pretrained  # pylint: disable=import-outside-toplevel

    images = np.concatenate([np.asarray(b) for b in datasets.load("fashion_mnist", "test[:3]", 3, shuffle=False)])
    model = pretrained.load(name)
    data = compression.compress(model, images, allow_stored=False)
    assert container.unpack(data)[0]["codec"] != container.STORED
    (tmp_path / "old.kbc").write_bytes(data)
    code, out, err = _in_process(["--decompress", "--input", tmp_path / "old.kbc", "--output", tmp_path / "back"])
    assert code == 0, err[-3000:]
    np.testing.assert_array_equal(_read_folder(tmp_path / "back")[1], images)
    # the default model did not write it: the fingerprint, not the default, chose the model
    header = container.unpack(data)[0]
    assert not cli._wrote(pretrained.load(cli.DEFAULT_MODEL), header)  # pylint: disable=protected-access

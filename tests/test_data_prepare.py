"""Preparing tfds data is hermetic and atomic (keras_bdgm.datasets.prepared): the tests' data
folder is their session's own, never the home directory; a preparation killed midway leaves
nothing a later load trusts; concurrent preparations take turns.

Each test prepares Fashion-MNIST from Debian's files at least once (about half a minute of
CPU each), in subprocesses where a process must die or run beside another.
"""

import hashlib
import os
import pathlib
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import conftest
from keras_bdgm import datasets
from keras_bdgm.datasets import fashion_mnist, prepared

ROOT = pathlib.Path(__file__).parents[1]  # the checkout, or the runfiles tree under Bazel
VERSION_DIR = os.path.join("fashion_mnist", "3.0.1")  # tfds's fashion_mnist version folder

pytestmark = pytest.mark.skipif(
    bool(fashion_mnist.missing_files(fashion_mnist.DEBIAN_DIR)),
    reason=f"Fashion-MNIST files not in {fashion_mnist.DEBIAN_DIR}: apt-get install dataset-fashion-mnist",
)

# Prepares fashion_mnist into argv[1], like a test would, then prints the split sizes and a
# digest of the test split (in its stored order). With argv[2], it pauses for good halfway
# through generating the test split (the train split's records are written by then), after
# creating the file argv[2], for the test to kill it there.
_PREPARE = textwrap.dedent("""
    import hashlib, sys, time
    from keras_bdgm import datasets
    from keras_bdgm.datasets import fashion_mnist

    if len(sys.argv) > 2:
        generate = fashion_mnist.DebianFashionMNIST._generate_examples

        def paused(self, num_examples, data_path, label_path):
            for index, example in enumerate(generate(self, num_examples, data_path, label_path)):
                if num_examples == 10000 and index == 5000:
                    open(sys.argv[2], "w").close()
                    time.sleep(3600)
                yield example

        fashion_mnist.DebianFashionMNIST._generate_examples = paused

    source = datasets.resolve("fashion_mnist", data_dir=sys.argv[1], download=False)
    digest = hashlib.sha256()
    for batch in source.load("test", 1000, shuffle=False):
        digest.update(batch.numpy().tobytes())
    print("SPLITS", source.num_examples("train"), source.num_examples("test"), digest.hexdigest())
""")


def _environ(**changes):
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    environ.update(changes)
    return {k: v for k, v in environ.items() if v is not None}


def _prepare(data_dir, *pause_marker):
    return subprocess.Popen([sys.executable, "-c", _PREPARE, str(data_dir), *map(str, pause_marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environ())


def _result(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return next(line for line in out.splitlines() if line.startswith("SPLITS")).split()[1:]


def _count(source, split):
    return sum(int(batch.shape[0]) for batch in source.load(split, 5000, shuffle=False))


def _staging_folders(data_dir):
    return sorted(p.name for p in pathlib.Path(data_dir).glob(".fashion_mnist-*.incomplete-*"))


def test_a_preparation_killed_midway_is_prepared_again(tmp_path):
    data_dir, marker = tmp_path / "tfds", tmp_path / "paused"
    process = _prepare(data_dir, marker)
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the preparation never reached the test split"
            time.sleep(0.2)
        written = sorted(data_dir.glob(".fashion_mnist-*.incomplete-*/**/fashion_mnist-train.tfrecord*"))
        assert written, sorted(str(p) for p in data_dir.rglob("*"))  # it had started writing
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (data_dir / VERSION_DIR).exists()  # nothing half-written where tfds reads
    assert len(_staging_folders(data_dir)) == 1

    # What a non-atomic writer killed midway leaves: the version folder with the train records
    # only, no dataset_info.json. The next load must not trust it.
    (data_dir / VERSION_DIR).mkdir(parents=True)
    (data_dir / VERSION_DIR / written[0].name).write_bytes(written[0].read_bytes()[: 1 << 20])

    source = datasets.resolve("fashion_mnist", data_dir=str(data_dir), download=False)
    assert (source.num_examples("train"), source.num_examples("test")) == (60000, 10000)
    assert (_count(source, "train"), _count(source, "test")) == (60000, 10000)
    assert prepared.is_complete(data_dir / VERSION_DIR)
    assert _staging_folders(data_dir) == []  # the killed one's folder is cleaned up


def test_concurrent_preparations_take_turns_and_give_the_same_data(tmp_path):
    data_dir = tmp_path / "tfds"
    first, second = _prepare(data_dir), _prepare(data_dir)
    results = [_result(first), _result(second)]
    assert results[0] == results[1] and results[0][:2] == ["60000", "10000"], results
    source = datasets.resolve("fashion_mnist", data_dir=str(data_dir), download=False)
    digest = hashlib.sha256()
    for batch in source.load("test", 1000, shuffle=False):
        digest.update(batch.numpy().tobytes())
    assert digest.hexdigest() == results[0][2]
    assert _staging_folders(data_dir) == []
    assert sorted(os.listdir(data_dir / "fashion_mnist")) == ["3.0.1"]


def test_tests_prepare_data_in_their_session_folder(tmp_path):
    """Fashion-MNIST with the default data_dir lands in this session's folder, also for a
    subprocess (as the example scripts are run), and not in the home directory."""
    home = os.path.realpath(os.path.expanduser("~"))
    session = os.path.realpath(conftest.SESSION_DIR)
    default = os.path.realpath(prepared.default_data_dir())
    if not os.environ.get(conftest.SHARED_DATA_DIR_ENV):
        assert default.startswith(session + os.sep), (default, session)
    assert not default.startswith(home + os.sep) or session.startswith(home + os.sep), (default, home)
    source = datasets.resolve("fashion_mnist", download=False)
    assert _count(source, "test") == 10000
    assert prepared.is_complete(os.path.join(default, VERSION_DIR))
    child = subprocess.run(
        [sys.executable, "-c", "from keras_bdgm.datasets import prepared; print(prepared.default_data_dir())"],
        capture_output=True, text=True, env=_environ(), timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert os.path.realpath(child.stdout.strip()) == default


def test_a_test_session_writes_nothing_into_home(tmp_path):
    """pytest on the test above, with HOME a read-only empty folder and none of this
    session's settings: it passes, and HOME stays empty (as root, read-only does not stop
    writes, so emptiness is what is checked)."""
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    home.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        environ = _environ(
            HOME=str(home), TMPDIR=str(scratch),
            # This session's own settings and Bazel's test protocol: the child finds its own.
            TFDS_DATA_DIR=None, KERAS_HOME=None, TEST_TMPDIR=None, XML_OUTPUT_FILE=None,
            TESTBRIDGE_TEST_ONLY=None, **{conftest.SHARED_DATA_DIR_ENV: None},
        )
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(scratch / "pytest"),
             str(pathlib.Path(__file__)), "-k", "test_tests_prepare_data_in_their_session_folder"],
            capture_output=True, text=True, env=environ, cwd=str(ROOT), timeout=900,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "1 passed" in out.stdout, out.stdout[-3000:]
        assert sorted(os.listdir(home)) == []
        # The session folder (under TMPDIR) was the child's own and is deleted at its end.
        assert not list(scratch.glob("keras_bdgm-tests-*")), sorted(os.listdir(scratch))
    finally:
        home.chmod(stat.S_IRWXU)

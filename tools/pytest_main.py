"""Entry point of the Bazel `py_test` targets: run pytest on one test module.

Each `py_test` in the top-level BUILD runs

    tools/pytest_main.py tests/test_<name>.py [--test_arg ...]

so `bazel test //...` runs exactly the tests that `pytest tests/` runs, one target per
module. The wrapper maps Bazel's test protocol onto pytest:

- `--test_filter=EXPR` (env `TESTBRIDGE_TEST_ONLY`) -> `pytest -k EXPR`;
- the per-test XML report (env `XML_OUTPUT_FILE`) -> `pytest --junitxml`, so Bazel and CI
  see every test case;
- `TEST_TMPDIR` -> `pytest --basetemp`, so `tmp_path` lives in Bazel's scratch folder;
- pytest's cache and `.pyc` files are not written into the read-only runfiles tree.

Extra pytest flags pass through, e.g. `bazel test //:test_layers --test_arg=-m
--test_arg='not slow'`. The exit status is pytest's.

#### Examples

    python tools/pytest_main.py tests/test_layers.py -x    # also works outside Bazel
"""

import os
import sys


def resolve_test_file(path, environ):
    """Return `path` as found from the test's working directory or the runfiles root.

    Bazel runs a test in `$TEST_SRCDIR/$TEST_WORKSPACE`. When keras_bdgm is an external
    repository of another workspace, `$(rootpath)` may name its files as
    `external/<repo>/...`, which lives at `$TEST_SRCDIR/<repo>/...` in the runfiles
    (`../<repo>/...` paths already work from the working directory).
    """
    srcdir = environ.get("TEST_SRCDIR")
    if os.path.exists(path) or not srcdir or not path.startswith("external/"):
        return path  # a missing file is left for pytest to report
    candidate = os.path.join(srcdir, path[len("external/"):])
    return candidate if os.path.exists(candidate) else path


def pytest_args(argv, environ):
    """Translate `pytest_main.py FILE [PYTEST_ARGS...]` and Bazel's test env into pytest args.

    Args:
      argv: command-line arguments after the program name; the first is the test module.
      environ: the environment (a mapping), read for Bazel's test protocol variables.

    Returns:
      The list of arguments for `pytest.main`.

    Raises:
      ValueError: when no test module is given.
    """
    if not argv:
        raise ValueError(
            "pytest_main.py needs the test module to run as its first argument, "
            "e.g. `python tools/pytest_main.py tests/test_layers.py`."
        )
    test_file, extra = argv[0], list(argv[1:])
    args = [resolve_test_file(test_file, environ), "-p", "no:cacheprovider", "-ra"]
    if environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", environ["TESTBRIDGE_TEST_ONLY"]]
    if environ.get("XML_OUTPUT_FILE"):
        args += ["--junitxml", environ["XML_OUTPUT_FILE"]]
    if environ.get("TEST_TMPDIR"):
        args += ["--basetemp", os.path.join(environ["TEST_TMPDIR"], "pytest")]
    return args + extra


def main(argv=None):
    """Run pytest on the given test module; returns pytest's exit status."""
    argv = sys.argv[1:] if argv is None else argv
    sys.dont_write_bytecode = True  # the runfiles tree is not ours to write into
    try:
        import pytest  # pylint: disable=import-outside-toplevel
    except ImportError:
        sys.stderr.write(
            f"pytest is not installed for {sys.executable}. Bazel runs the tests on the active "
            "Python environment (tools/python_env.sh): activate the one that has keras_bdgm's "
            "dependencies and pytest (e.g. `. .venv/bin/activate`, after "
            "`pip install -e \".[test]\"`) before running bazel.\n"
        )
        return 1
    return int(pytest.main(pytest_args(argv, os.environ)))


if __name__ == "__main__":
    sys.exit(main())

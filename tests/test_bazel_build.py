"""The Bazel test entry point (tools/pytest_main.py) and the interpreter Bazel tests run on."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import keras_bdgm

ROOT = pathlib.Path(__file__).parents[1]  # the checkout, or the runfiles tree under Bazel
PYTEST_MAIN = ROOT / "tools" / "pytest_main.py"

_spec = importlib.util.spec_from_file_location("pytest_main", PYTEST_MAIN)
pytest_main = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pytest_main)

_SAMPLE_MODULE = '''
def test_alpha():
    assert 1 + 1 == 2

def test_beta():
    assert 2 * 2 == 4

def test_gamma_fails():
    assert 1 == 2
'''


def test_args_without_bazel_env_run_the_file_with_extra_args_last():
    args = pytest_main.pytest_args(["tests/test_x.py", "-x", "-m", "not slow"], {})
    assert args[0] == "tests/test_x.py"
    assert args[-3:] == ["-x", "-m", "not slow"]
    assert "-k" not in args and "--junitxml" not in args and "--basetemp" not in args
    assert ["-p", "no:cacheprovider"] == args[1:3]


def test_args_map_bazel_test_protocol_onto_pytest():
    env = {"TESTBRIDGE_TEST_ONLY": "alpha or beta", "XML_OUTPUT_FILE": "/out/test.xml", "TEST_TMPDIR": "/scratch"}
    args = pytest_main.pytest_args(["tests/test_x.py"], env)
    assert args[args.index("-k") + 1] == "alpha or beta"
    assert args[args.index("--junitxml") + 1] == "/out/test.xml"
    assert args[args.index("--basetemp") + 1] == os.path.join("/scratch", "pytest")


def test_args_without_a_test_module_raise_with_usage():
    with pytest.raises(ValueError, match="test module"):
        pytest_main.pytest_args([], {})


def test_external_repository_paths_resolve_under_test_srcdir(tmp_path, monkeypatch):
    target = tmp_path / "other_repo" / "tests" / "test_x.py"
    target.parent.mkdir(parents=True)
    target.write_text("")
    (tmp_path / "main_repo").mkdir()
    monkeypatch.chdir(tmp_path / "main_repo")  # Bazel's working directory: the main repo
    path = "external/other_repo/tests/test_x.py"
    assert pytest_main.resolve_test_file(path, {"TEST_SRCDIR": str(tmp_path)}) == str(target)
    assert pytest_main.resolve_test_file(path, {}) == path  # left for pytest to report
    sibling = "../other_repo/tests/test_x.py"  # already valid from the working directory
    assert pytest_main.resolve_test_file(sibling, {"TEST_SRCDIR": str(tmp_path)}) == sibling


def _run_wrapper(tmp_path, *args, **env):
    module = tmp_path / "test_sample.py"
    module.write_text(_SAMPLE_MODULE)
    # Drop the outer run's Bazel variables: its --basetemp would wipe this test's tmp_path.
    bazel_vars = ("TESTBRIDGE_TEST_ONLY", "XML_OUTPUT_FILE", "TEST_TMPDIR")
    environ = {k: v for k, v in os.environ.items() if k not in bazel_vars}
    environ.update(env)
    return subprocess.run(
        [sys.executable, str(PYTEST_MAIN), str(module), *args],
        capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120,
    )


def _junit_cases(path):
    root = ET.parse(path).getroot()
    return {case.get("name"): case.find("failure") is None for case in root.iter("testcase")}


def test_wrapper_runs_the_filtered_tests_and_writes_bazel_xml(tmp_path):
    xml = tmp_path / "out" / "test.xml"
    out = _run_wrapper(tmp_path, TESTBRIDGE_TEST_ONLY="alpha or beta", XML_OUTPUT_FILE=str(xml),
                       TEST_TMPDIR=str(tmp_path / "scratch"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert _junit_cases(xml) == {"test_alpha": True, "test_beta": True}


def test_wrapper_exit_status_reports_a_failing_test(tmp_path):
    xml = tmp_path / "test.xml"
    out = _run_wrapper(tmp_path, XML_OUTPUT_FILE=str(xml))
    assert out.returncode == 1, out.stdout[-2000:]
    assert _junit_cases(xml) == {"test_alpha": True, "test_beta": True, "test_gamma_fails": False}


@pytest.mark.skipif("VIRTUAL_ENV" not in os.environ, reason="no virtual environment is active")
def test_tests_run_on_the_active_virtual_environment():
    assert os.path.samefile(sys.prefix, os.environ["VIRTUAL_ENV"])


@pytest.mark.skipif("TEST_SRCDIR" not in os.environ, reason="only under `bazel test`")
def test_under_bazel_keras_bdgm_comes_from_the_declared_sources():
    # The py_library's runfiles, not an installed copy: a file missing from BUILD breaks the test.
    srcdir = os.path.abspath(os.environ["TEST_SRCDIR"])
    assert os.path.abspath(keras_bdgm.__file__).startswith(srcdir + os.sep)

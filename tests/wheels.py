"""Building the project's wheel for tests, from a copy of the tree (the checkout may be
read-only, as under Bazel's sandbox, and setuptools writes build/ beside setup.py)."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def build_wheel(out_dir):
    """Builds keras_bdgm's wheel (no dependencies, no build isolation) into `out_dir`;
    returns its path."""
    out_dir = pathlib.Path(out_dir)
    source = out_dir / "source"
    source.mkdir(parents=True)
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "keras_bdgm", source / "keras_bdgm",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(out_dir / "dist")], check=True, cwd=source, timeout=600)
    (path,) = (out_dir / "dist").glob("keras_bdgm-*.whl")
    return path

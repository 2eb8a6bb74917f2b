"""What `pip wheel .` ships: every subpackage of the tree, the trained models and the hook."""

import zipfile

import pytest
from wheels import ROOT, build_wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel (no dependencies, no build isolation)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_every_subpackage_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tree = ROOT / "keras_bdgm"
    packages = [p.parent.relative_to(ROOT).as_posix() for p in tree.rglob("__init__.py")]
    assert {"keras_bdgm/runs", "keras_bdgm/models", "keras_bdgm/datasets", "keras_bdgm/compression"} <= set(packages)
    for package in packages:
        modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / package).glob("*.py")]
        missing = [m for m in modules if m not in names]
        assert not missing, f"the wheel lacks {missing}"
    shipped = [p.relative_to(ROOT).as_posix() for p in (tree / "pretrained").iterdir() if p.suffix in (".bdgm", ".json")]
    assert shipped and set(shipped) <= names
    assert "keras_bdgm_larq_first.pth" in names

"""The package's three wings: the library, the runs, the products (and the datasets).

Arrows allowed (`keras_bdgm/__init__.py`, the facade, is outside the rule):

    library  -> library
    datasets -> datasets
    runs     -> library, datasets, runs
    products -> library, datasets, runs, products

The test reads every module's imports (top level and inside functions) with `ast`, so a
lazy import inside a function counts as much as one at the top.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_bdgm"
WINGS = {"runs": "runs", "compression": "products", "pretrained": "products", "datasets": "datasets"}
MAY_IMPORT = {
    "library": {"library"},
    "datasets": {"datasets"},
    "runs": {"library", "datasets", "runs"},
    "products": {"library", "datasets", "runs", "products"},
}


def wing_of(module):
    """'keras_bdgm.runs.experiment' -> 'runs'; library modules and subpackages -> 'library'."""
    parts = module.split(".")
    return WINGS.get(parts[1], "library") if len(parts) > 1 else "facade"


def module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path):
    """Every keras_bdgm module that `path` imports, resolving `from keras_bdgm import x`
    to the submodule `keras_bdgm.x` where one exists."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("keras_bdgm"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_bdgm"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                sub_path = PACKAGE.parent.joinpath(*sub.split("."))
                found.add(sub if sub_path.with_suffix(".py").exists() or sub_path.is_dir() else node.module)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if module_name(p) != "keras_bdgm")


def test_every_module_is_in_a_wing_and_the_root_is_small():
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top_level) <= 16, top_level
    assert "experiment.py" not in top_level
    for sub in ("runs", "compression", "pretrained", "datasets", "models", "bijectors"):
        assert (PACKAGE / sub / "__init__.py").exists(), sub


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_import_against_the_wings(path):
    source = wing_of(module_name(path))
    bad = sorted(m for m in imported_modules(path) if m != "keras_bdgm" and wing_of(m) not in MAY_IMPORT[source])
    assert not bad, f"{module_name(path)} ({source}) imports {bad}: the {source} may import only {sorted(MAY_IMPORT[source])}"


def test_the_checker_sees_a_forbidden_arrow(tmp_path):
    """The oracle above would catch a library module that imports the runs or a product."""
    fake = PACKAGE / "models" / "flowpp.py"
    mods = imported_modules(fake)
    assert "keras_bdgm.models.base" in mods  # resolved to the submodule, not the package
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from keras_bdgm import compression\n    from keras_bdgm.runs import experiment\n")
    assert imported_modules(probe) == {"keras_bdgm.compression", "keras_bdgm.runs.experiment"}
    assert {wing_of(m) for m in imported_modules(probe)} == {"products", "runs"}
    assert not {wing_of(m) for m in imported_modules(probe)} <= MAY_IMPORT["library"]

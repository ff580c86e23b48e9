"""The package's layout rules (docs/architecture.md), read from the source: each sub-package imports
only the ones below it, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "textlstm"
TOP = {"errors", "config", "fileio", "tokens", "turns"}  # the top's own modules: no sub-package
MAY_IMPORT = {
    "hardware": set(),
    "data": {"hardware"},
    "model": {"hardware"},
    "runs": {"hardware", "data", "model"},
    "evaluation": {"hardware", "data", "model", "runs"},
    "generation": {"hardware", "data", "model", "runs"},
    "inspection": {"hardware", "data", "model", "runs"},
    "training": {"hardware", "data", "model", "runs", "evaluation"},
    "serve": {"hardware", "data", "model", "runs", "evaluation", "generation", "inspection"},
    "cli": {"hardware", "data", "model", "runs", "evaluation", "generation", "inspection", "training", "serve"},
}


def textlstm_imports(path: Path) -> set[str]:
    """The textlstm modules `path` imports, anywhere in it (as dotted names below textlstm)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name.removeprefix("textlstm.") for name in names if name.startswith("textlstm.")}
    return found


def stage(dotted: str) -> str:
    head = dotted.split(".")[0]
    return "top" if head in TOP else head


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_sub_package_imports_only_the_ones_below_it(package):
    allowed = MAY_IMPORT[package] | {package, "top"}
    wrong = {
        f"{path.relative_to(PACKAGE)} imports textlstm.{name}"
        for path in (PACKAGE / package).rglob("*.py")
        for name in textlstm_imports(path)
        if stage(name) not in allowed and name.split(".")[0] in MAY_IMPORT | dict.fromkeys(TOP)
    }
    assert not wrong, sorted(wrong)


def test_the_top_modules_import_no_sub_package():
    for name in TOP:
        imported = {stage(module) for module in textlstm_imports(PACKAGE / f"{name}.py") if module != "__version__"}
        assert imported <= {"top"}, (name, imported)


def test_every_module_belongs_to_a_known_place():
    places = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in source_files()}
    assert places <= set(MAY_IMPORT) | TOP | {"__init__", "__main__"}, places - set(MAY_IMPORT) - TOP


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_sub_package_says_its_job_and_what_it_may_import(package):
    init = PACKAGE / package / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree) or ""
    assert all(isinstance(node, ast.Expr) for node in tree.body), (
        f"{package}/__init__.py holds code: keep it a docstring"
    )
    assert "May import" in docstring, docstring
    named = {word for word in MAY_IMPORT if f"`{word}`" in docstring.split("May import", 1)[1]}
    assert named == MAY_IMPORT[package], (package, named)


def test_listing_reading_and_plotting_runs_do_not_load_torch():
    """`textlstm runs`, `info`'s reading and `plot` need JSON files only, not the network."""
    import subprocess
    import sys

    code = (
        "import sys, textlstm.cli.runs, textlstm.cli.plot, textlstm.runs.saved_runs, textlstm.runs.plot; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

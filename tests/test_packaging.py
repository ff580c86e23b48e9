"""What pyproject.toml declares: floors that CI tests, and an install that cannot pull another torch."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def requirements() -> dict[str, str]:
    """{name: floor} of the core dependencies."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for requirement in declared:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)", requirement)
        assert match, f"{requirement!r}: declare a floor, name>=version"
        floors[match[1].lower()] = match[2]
    return floors


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.lower().split("==") for line in lines if line)


def test_the_floors_file_pins_every_core_dependency_at_its_declared_floor():
    floors = pins(REPO / ".ci" / "floors.txt")
    declared = requirements()
    torch = declared.pop("torch")
    assert floors.pop("torch") == pins(REPO / "constraints.txt")["torch"]  # the pinned build, not torch's floor
    assert torch
    assert {name: Version(floors.get(name, "0")) for name in declared} == {
        name: Version(v) for name, v in declared.items()
    }


def extras() -> dict[str, set[str]]:
    """{extra: the package names it installs}."""
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {
        extra: {re.split(r"[<>=!\[; ]", requirement)[0].lower().replace("-", "_") for requirement in requirements}
        for extra, requirements in optional.items()
    }


def third_party_imports(path: Path) -> tuple[set[str], set[str]]:
    """(top-level package names imported at module level, those imported inside functions) by `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    at_module_level = {id(node) for node in tree.body}
    module_level, deferred = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        heads = {name.split(".")[0] for name in names} - set(sys.stdlib_module_names) - {"textlstm"}
        (module_level if id(node) in at_module_level else deferred).update(heads)
    return module_level, deferred


def test_the_core_imports_only_declared_packages_and_an_extra_only_when_it_is_used():
    """A module-level import must be a core dependency (textlstm/serve/, the server, needs its extra
    as a whole); an import inside a function may be an extra's package, loaded only when used."""
    core = set(requirements())
    optional = set().union(*extras().values())
    for path in (REPO / "textlstm").rglob("*.py"):
        module_level, deferred = third_party_imports(path)
        if "serve" in path.relative_to(REPO / "textlstm").parts:
            module_level, deferred = set(), module_level | deferred
        assert module_level <= core, (path, module_level - core)
        assert deferred <= core | optional, (path, deferred - core - optional)


def test_the_shipped_corpus_cards_are_package_data():
    """A card name (--dataset tinyshakespeare) works however textlstm was installed: the wheel carries the cards."""
    from textlstm.data.corpora.cards import CARD_FOLDERS

    corpora_package = REPO / "textlstm" / "data" / "corpora"
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    cards = [card.relative_to(corpora_package).as_posix() for card in CARD_FOLDERS[-1].glob("*.toml")]
    assert "shipped_cards/tinyshakespeare.toml" in cards
    assert all(any(fnmatch(card, pattern) for pattern in patterns["textlstm.data.corpora"]) for card in cards)


def test_every_package_a_benchmark_imports_is_a_core_dependency_or_in_the_bench_extra():
    benchmarks = REPO / "benchmarks"
    own = {path.stem for path in benchmarks.rglob("*.py")} | {"benchmarks"}  # scripts that import their neighbours
    declared = set(requirements()) | (extras()["bench"] - {"textlstm"})
    for path in benchmarks.rglob("*.py"):
        imported = set().union(*third_party_imports(path))
        assert imported <= declared | own, (path, imported - declared - own)


def test_benchmarks_and_tests_import_by_package_not_by_editing_sys_path():
    """benchmarks/ is a package run with python -m from the repository root: no script reaches into
    another by putting its folder on sys.path."""
    root = Path(__file__).resolve().parents[1]
    editing = [
        str(path.relative_to(root))
        for folder in ("benchmarks", "tests")
        for path in (root / folder).rglob("*.py")
        if "sys.path.insert(" in path.read_text(encoding="utf-8") and path.name != "test_packaging.py"
    ]
    assert editing == []

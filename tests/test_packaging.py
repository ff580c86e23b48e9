"""What pyproject.toml declares: floors that CI tests, and an install that cannot pull another torch."""

from __future__ import annotations

import re
import sys
import tomllib
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
    assert {name: Version(floors.get(name, '0')) for name in declared} == {name: Version(v) for name, v in declared.items()}


def test_every_third_party_package_the_code_imports_is_declared():
    """A package imported by textlstm's core must be a dependency, not something that comes along."""
    imported = set()
    for path in (REPO / "textlstm").rglob("*.py"):
        if "serve" in path.parts or path.name == "plot.py":
            continue  # the extras' modules
        imported |= set(re.findall(r"^\s*(?:from|import) ([a-z_]+)", path.read_text(), re.M))
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "textlstm"}
    assert third_party <= set(requirements()), third_party - set(requirements())


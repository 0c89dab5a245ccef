"""Package arrows point one way (docs/DESIGN.md §1): stages share only spin_io and model_fetch, flows chains them.

Every import statement (top level or inside a function) of every module is read with `ast`, so a lazy
import counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {"align", "smr_core", "recon", "exporters", "flows", "model_fetch", "spin_io"}

# package -> packages it must never import
FORBIDDEN = {
    "align": {"smr_core", "recon", "exporters", "flows"},
    "smr_core": {"align", "recon", "exporters", "flows"},
    "recon": {"flows"},
    "exporters": {"flows"},
    # weight fetching, verification, licence records and the shared weights-folder lookups: every stage
    # (and flows) may import it; it imports only spin_io
    "model_fetch": PACKAGES - {"model_fetch", "spin_io"},
    "spin_io": PACKAGES - {"spin_io"},
}

# Known arrows against the rule, kept until their code moves: (module file, imported module). None are left: the
# identity report gets align's recogniser from flows (align.recogniser), and filter-data is flows/filter_cli.py.
KNOWN: set[tuple[str, str]] = set()


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (relative imports stay in their package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _arrows(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                found.add((rel, name))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_new_arrow_against_the_layout(package):
    wrong = _arrows(package) - KNOWN
    assert not wrong, f"{package} must not import {sorted(FORBIDDEN[package])}: " + ", ".join(
        f"{rel} imports {name}" for rel, name in sorted(wrong)
    )


def test_known_exceptions_still_exist():
    """An exception that was fixed is removed from KNOWN, so it cannot come back unnoticed."""
    everything = set().union(*(_arrows(p) for p in FORBIDDEN))
    assert KNOWN <= everything, f"fixed, remove from KNOWN: {sorted(KNOWN - everything)}"


def test_align_does_not_import_smr_core_errors():
    """align has its own exception hierarchy (align.errors) carrying the documented exit codes."""
    assert not [rel for rel, name in _arrows("align") if name == "smr_core.errors"]


def test_every_package_is_checked_and_packaged():
    """A top-level package is in the arrow rules and in the wheel (pyproject's package list), model_fetch included."""
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk == PACKAGES == set(FORBIDDEN) | {"flows"}, sorted(on_disk ^ PACKAGES)
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    include = next(line for line in pyproject.splitlines() if line.startswith("packages = { find = { include"))
    assert all(f'"{name}*"' in include for name in PACKAGES), include

"""Imports run one way: each module may import only from its own folder or from a layer below it.

The layer order is written once, here, lowest first. Names on one line are siblings: neither may
import the other. A module not covered by any entry fails the test, so a new folder gets a place.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "heablcoin_mcp"

LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("config",),
    ("core.clock", "core.monitor", "core.netguard", "core.redact"),
    ("core.storage",),
    ("core.market", "core.llm"),
    ("core.analysis",),
    ("core.books",),
    ("core.risk",),
    ("core.trading",),
    ("core.tasks",),
    ("core.changes",),
    ("app", "doctor"),
    ("tools", "notifications"),
    ("server",),
    ("http", "stdio", "demo", "client_config"),
    ("cli",),
    ("__main__",),
]
PACKAGE_ROOT = ("__init__", "core")  # the package docstrings and version string; anyone may import them


def unit_of(module: str) -> str:
    """The layer entry a dotted module name (below heablcoin_mcp) belongs to."""
    for group in LAYERS:
        for unit in group:
            if module == unit or module.startswith(unit + "."):
                return unit
    raise AssertionError(f"heablcoin_mcp.{module} has no place in LAYERS")


def rank(unit: str) -> int:
    return next(i for i, group in enumerate(LAYERS) if unit in group)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every heablcoin_mcp module a file imports, lazily or not, as names below the package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("heablcoin_mcp."):
                found.add(name.removeprefix("heablcoin_mcp."))
    return found


def known(name: str) -> str | None:
    """The module a dotted import name refers to (``a.b.c`` may be the module ``a.b`` and its member ``c``)."""
    parts = name.split(".")
    while parts:
        candidate = PACKAGE.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return None


def test_every_import_runs_down_the_layers_or_stays_in_its_folder() -> None:
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if importer in PACKAGE_ROOT:
            continue
        mine = unit_of(importer)
        for name in imports_of(path):
            target = known(name)
            if target is None or target in PACKAGE_ROOT:
                continue
            theirs = unit_of(target)
            if theirs != mine and rank(theirs) >= rank(mine):
                offences.append(f"{importer} imports {target} ({theirs} is not below {mine})")
    assert offences == []


def test_the_layer_test_sees_an_upward_import() -> None:
    assert rank(unit_of("core.trading.orders")) > rank(unit_of("core.risk.engine"))
    assert rank(unit_of("core.books.ledger")) < rank(unit_of("core.risk.engine"))
    assert unit_of("core.tasks.queue") == "core.tasks"


def test_no_module_is_longer_than_450_lines() -> None:
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 450} == {}


def test_the_architecture_map_ships_with_the_repository_and_nothing_points_outside_it() -> None:
    root = PACKAGE.parent
    assert "docs/ARCHITECTURE.md" in (root / "README.md").read_text()
    assert (root / "docs" / "ARCHITECTURE.md").exists()
    shipped = [root / "README.md", *root.joinpath("docs").rglob("*.md"), *PACKAGE.rglob("*.py")]
    assert [str(p.relative_to(root)) for p in shipped if "../shared" in p.read_text()] == []

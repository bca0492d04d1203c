"""The core does no I/O: it imports nothing that could."""

from __future__ import annotations

import ast
from pathlib import Path

import stasis_dnd.core

FORBIDDEN = {
    "asyncio",
    "http",
    "logging",
    "os",
    "random",
    "requests",
    "select",
    "socket",
    "sqlite3",
    "subprocess",
    "threading",
    "time",
    "urllib",
    "websocket",
}
# The core may use its own modules and the shared settings dataclasses.
ALLOWED_PROJECT = ("stasis_dnd.core", "stasis_dnd.settings")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_io() -> None:
    core = Path(stasis_dnd.core.__file__).parent
    files = sorted(core.glob("*.py"))
    assert len(files) >= 4
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in FORBIDDEN, f"{path.name} imports {module}"
            if top == "stasis_dnd":
                assert module.startswith(ALLOWED_PROJECT), f"{path.name} imports {module}"


def test_settings_import_no_io() -> None:
    path = Path(stasis_dnd.core.__file__).parent.parent / "settings.py"
    for module in imported_modules(path):
        assert module.split(".")[0] not in FORBIDDEN, module

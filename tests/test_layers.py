"""Imports flow one way: cli -> runtime -> {ari, callbacks} -> core -> the
shared top-level modules. `testing` sits above all of them; only the `demo`
subcommand reaches into it, for the simulated demo that lives beside the kit."""

from __future__ import annotations

import ast
from pathlib import Path

import stasis_dnd

PACKAGE = Path(stasis_dnd.__file__).parent
# Rank of each layer: a module imports only from lower ranks or its own layer.
RANKS = {"shared": 0, "core": 1, "ari": 2, "callbacks": 2, "runtime": 3, "cli": 4, "testing": 5}
SHARED = {
    "stasis_dnd",
    "stasis_dnd.backoff",
    "stasis_dnd.config",
    "stasis_dnd.guard",
    "stasis_dnd.hours",
    "stasis_dnd.http_pool",
    "stasis_dnd.logs",
    "stasis_dnd.metrics",
    "stasis_dnd.profiles",
    "stasis_dnd.settings",
    "stasis_dnd.sounds",
    "stasis_dnd.tls",
}
# (importer, imported): `stasis-dnd demo` runs the demo that lives in testing.
EXCEPTIONS = {("stasis_dnd.cli.main", "stasis_dnd.testing.demo")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer a module of the package belongs to; unknown ones fail."""
    if module in SHARED:
        return "shared"
    if module == "stasis_dnd.__main__":
        return "cli"
    parts = module.split(".")
    assert len(parts) >= 2 and parts[1] in RANKS, f"{module} belongs to no layer"
    return parts[1]


def project_imports(path: Path, module: str) -> set[str]:
    """Every stasis_dnd module `path` imports, lazily or for typing only too."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            # `from stasis_dnd import ari` imports the subpackage, not the root.
            names.update(
                f"{base}.{alias.name}" for alias in node.names if _exists(base, alias.name)
            )
    return {name for name in names if name.split(".")[0] == "stasis_dnd"}


def _exists(package: str, name: str) -> bool:
    folder = PACKAGE.parent.joinpath(*package.split("."), name)
    return folder.is_dir() or folder.with_suffix(".py").is_file()


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        own = layer_of(importer)
        for imported in sorted(project_imports(path, importer)):
            other = layer_of(imported)
            if (importer, imported) in EXCEPTIONS or other == own:
                continue
            if RANKS[other] >= RANKS[own]:
                found.append(f"{importer} ({own}) imports {imported} ({other})")
    return found


def test_every_import_points_down_the_layers() -> None:
    assert violations() == []


def test_every_module_is_checked() -> None:
    modules = [module_name(path) for path in PACKAGE.rglob("*.py")]
    assert {layer_of(module) for module in modules} == set(RANKS)
    assert len(modules) > 40

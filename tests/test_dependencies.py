"""The app imports only what its install declares: every library the package
imports at run time (outside `testing`, which the test extras serve) is in
setup.cfg's install_requires, or in an extra for a module only that extra
needs, and the Debian package depends on the same."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from pathlib import Path

import stasis_dnd

PACKAGE = Path(stasis_dnd.__file__).parent
ROOT = PACKAGE.parent
# Distribution name -> the module it installs, where they differ.
MODULE_OF = {"websocket-client": "websocket", "prometheus-client": "prometheus_client"}
DEBIAN_OF = {"websocket": "python3-websocket", "prometheus_client": "python3-prometheus-client"}


def imported_libraries() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "testing" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names} - {"stasis_dnd"}


def declared(section: str, key: str) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config[section][key].split("\n")
    distributions = {re.split(r"[<>=!\s\[]", line.strip())[0] for line in lines if line.strip()}
    return {MODULE_OF.get(name, name) for name in distributions}


def test_the_app_imports_only_what_it_declares() -> None:
    required = declared("options", "install_requires")
    optional = declared("options.extras_require", "postgresql")
    assert imported_libraries() == required | optional
    assert "requests" not in required
    assert "psycopg" in optional


def test_the_debian_package_depends_on_the_same_libraries() -> None:
    control = (ROOT / "debian" / "control").read_text()
    depends = control.split("\nDepends:", 1)[1].split("\nSuggests:", 1)[0]
    wanted = {DEBIAN_OF[name] for name in declared("options", "install_requires")}
    named = set(re.findall(r"python3-[a-z0-9-]+", depends))
    assert named == wanted

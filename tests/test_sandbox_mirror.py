"""sandbox/sandbox_mirror.py: the sandbox's Debian mirror is the one this
machine's apt sources name (one-line and deb822 formats), never a host written
into the repository."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

SANDBOX = Path(__file__).resolve().parents[1] / "sandbox"


@pytest.fixture(scope="module")
def mirror() -> ModuleType:
    sys.path.insert(0, str(SANDBOX))  # the sandbox's modules import each other by name
    return importlib.import_module("sandbox_mirror")


def apt(tmp_path: Path, main: str = "", **parts: str) -> Path:
    """An /etc/apt with `sources.list` = `main` and sources.list.d/NAME = text."""
    (tmp_path / "sources.list.d").mkdir()
    if main:
        (tmp_path / "sources.list").write_text(main)
    for name, text in parts.items():
        (tmp_path / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return tmp_path


DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://ftp.example/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_deb822_sources_skip_the_security_archive(mirror: ModuleType, tmp_path: Path) -> None:
    assert mirror.apt_mirror(apt(tmp_path, debian_sources=DEB822)) == "http://mirror.example/debian"


def test_one_line_sources_with_options_and_comments(mirror: ModuleType, tmp_path: Path) -> None:
    main = (
        "# deb http://commented.example/debian sid main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://security.example/debian bookworm-security main\n"
        "deb [ arch=amd64 signed-by=/k.gpg ] https://other.example/apt stable main\n"
        "deb [arch=amd64] https://one.example/debian bookworm main  # the mirror\n"
    )
    assert mirror.apt_mirror(apt(tmp_path, main)) == "https://one.example/debian"


def test_sources_list_first_then_the_folder_by_name(mirror: ModuleType, tmp_path: Path) -> None:
    folder = apt(
        tmp_path,
        b_sources="Types: deb\nURIs: http://b.example/debian\nSuites: sid\n",
        a_list="deb http://a.example/debian sid main\n",
        c_disabled="deb http://ignored.example/debian sid main\n",
    )
    assert mirror.apt_mirror(folder) == "http://a.example/debian"
    (folder / "sources.list").write_text("deb http://first.example/debian sid main\n")
    assert mirror.apt_mirror(folder) == "http://first.example/debian"


def test_disabled_and_third_party_sources_are_not_the_mirror(
    mirror: ModuleType, tmp_path: Path
) -> None:
    folder = apt(
        tmp_path,
        a_sources=(
            "Types: deb\nURIs: http://off.example/debian\nSuites: sid\nEnabled: no\n\n"
            "Types: deb\nURIs: https://node.example/node_20.x\nSuites: nodistro\n\n"
            "Types: deb\nURIs:\n http://continued.example/debian\nSuites: sid\n"
        ),
    )
    assert mirror.apt_mirror(folder) == "http://continued.example/debian"


def test_no_mirror_is_one_clear_error(mirror: ModuleType, tmp_path: Path) -> None:
    folder = apt(tmp_path, a_list="deb https://packages.example/apt stable main\n")
    with pytest.raises(mirror.SandboxError, match="set STASIS_DND_SANDBOX_MIRROR"):
        mirror.apt_mirror(folder)

"""The Debian package on a real systemd: two builds of it (the second a newer
version, for the upgrade) and a booted Debian 12 container; the sandbox
Asterisk is tests/e2e's (`asterisk`). Needs root, and the first time network
to Debian's mirror."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sandbox"))

from systemd_kit import NEWER, Container, Debs, provision  # noqa: E402


def _build(version: str | None) -> Path:
    env = {**os.environ}
    if version:
        env["STASIS_DND_DEB_VERSION"] = version
    result = subprocess.run(
        [str(REPO / "scripts" / "deb")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def debs() -> Debs:
    """scripts/deb's package (in dist/), and the same tree built as a newer version."""
    return Debs(_build(None), _build(NEWER))


@pytest.fixture(scope="session")
def systemd_root() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the package test needs root (debootstrap, unshare, chroot)", pytrace=False)
    return provision()


@pytest.fixture
def container(systemd_root: Path) -> Iterator[Container]:
    """A clean Debian 12 with systemd running as its PID 1."""
    booted = Container(systemd_root)
    try:
        booted.boot()
        yield booted
    finally:
        booted.destroy()

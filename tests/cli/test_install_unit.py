"""stasis-dnd install-unit: the units of a pip install start that install's script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stasis_dnd.cli.units import UNITS, UnitError, install_units

REPO = Path(__file__).resolve().parents[2]


def test_units_start_the_given_script_and_keep_everything_else(tmp_path: Path) -> None:
    script = tmp_path / "venv/bin/stasis-dnd"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    written = install_units(tmp_path, script)
    assert [p.name for p in written] == list(UNITS)
    for path in written:
        shipped = (REPO / "systemd" / path.name).read_text().splitlines()
        got = path.read_text().splitlines()
        changed = [(a, b) for a, b in zip(shipped, got, strict=True) if a != b]
        assert len(changed) == 1, changed
        assert changed[0][0].startswith("ExecStart=/usr/bin/stasis-dnd run --config ")
        assert changed[0][1] == changed[0][0].replace("/usr/bin/stasis-dnd", str(script))


def test_the_debian_packages_script_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnitError, match="the Debian package"):
        install_units(tmp_path, Path("/usr/bin/stasis-dnd"))


def test_a_missing_script_or_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UnitError, match="no stasis-dnd script at"):
        install_units(tmp_path, tmp_path / "nothing")
    script = tmp_path / "stasis-dnd"
    script.write_text("")
    with pytest.raises(UnitError, match="is not a folder"):
        install_units(tmp_path / "missing", script)


def test_the_command_writes_units_for_the_running_environment(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stasis_dnd", "install-unit", "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "now run: systemctl daemon-reload" in result.stdout
    text = (tmp_path / "stasis-dnd.service").read_text()
    assert f"ExecStart={sys.prefix}/bin/stasis-dnd run --config " in text

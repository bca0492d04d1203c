"""`stasis-dnd install-unit`: the systemd units for an install made with pip.

The units in the repository's ``systemd/`` folder (shipped in the wheel as
data files under ``<prefix>/share/stasis-dnd/systemd/``) start
``/usr/bin/stasis-dnd``, where the Debian package puts it. For a venv such as
/opt/stasis-dnd, this writes them to /etc/systemd/system with ExecStart
pointing at that venv's own ``bin/stasis-dnd``.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path, PurePosixPath

UNITS = ("stasis-dnd.service", "stasis-dnd@.service")
DATA_FILES_DIR = PurePosixPath("share/stasis-dnd/systemd")
PACKAGED_EXECUTABLE = "/usr/bin/stasis-dnd"
DEFAULT_DEST = Path("/etc/systemd/system")


class UnitError(Exception):
    """The units cannot be written; the message says why, in one sentence."""


def shipped_unit(name: str) -> Path:
    """The unit file ``name`` of this installation (a checkout's systemd/ first)."""
    checkout = Path(__file__).resolve().parents[2] / "systemd" / name
    if checkout.is_file():
        return checkout
    try:
        files = metadata.distribution("stasis-dnd").files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if PurePosixPath(file.as_posix()).parts[-4:] == (*DATA_FILES_DIR.parts, name):
            located = Path(str(file.locate())).resolve()
            if located.is_file():
                return located
    raise UnitError(
        f"the unit {name} is missing from this installation ({DATA_FILES_DIR}); reinstall it"
    )


def this_executable() -> Path:
    """The ``stasis-dnd`` script of the Python environment running now."""
    return Path(sys.prefix) / "bin" / "stasis-dnd"


def install_units(dest: Path = DEFAULT_DEST, executable: Path | None = None) -> list[Path]:
    """Write the units into ``dest`` starting ``executable``; return the files written."""
    executable = executable or this_executable()
    if str(executable) == PACKAGED_EXECUTABLE:
        raise UnitError(
            f"{executable} is where the Debian package puts stasis-dnd, and the package "
            "installs its units itself; install-unit is for a venv made with pip"
        )
    if not executable.is_file():
        raise UnitError(
            f"no stasis-dnd script at {executable}; run install-unit with the stasis-dnd "
            "of the venv the service should use, e.g. /opt/stasis-dnd/bin/stasis-dnd"
        )
    if not dest.is_dir():
        raise UnitError(f"{dest} is not a folder (is systemd installed here?)")
    written = []
    for name in UNITS:
        text = shipped_unit(name).read_text()
        if f"ExecStart={PACKAGED_EXECUTABLE} " not in text:
            raise UnitError(f"{name} has no ExecStart={PACKAGED_EXECUTABLE} line to point here")
        target = dest / name
        try:
            target.write_text(
                text.replace(f"ExecStart={PACKAGED_EXECUTABLE} ", f"ExecStart={executable} ")
            )
        except OSError as error:
            raise UnitError(f"cannot write {target}: {error.strerror} (run as root)") from None
        written.append(target)
    return written

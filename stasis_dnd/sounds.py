"""The project's prompts: where they are shipped, and copying them into Asterisk.

The prompts (``custom/IVR_DND_*``, every one of ``sounds/prompts.toml`` in
every language, every format) live in ``sounds/<lang>/custom/`` of a source
checkout; an installed package carries the same tree as data files
under ``<prefix>/share/stasis-dnd/sounds/``. ``install_sounds`` copies them
into Asterisk's sounds folder (``stasis-dnd install-sounds DEST``).

DEST is the folder that holds Asterisk's language folders: ``astdatadir`` +
``/sounds`` (``asterisk -rx 'core show settings'``, "Data directory"), e.g.
``/usr/share/asterisk/sounds`` on Debian, ``/var/lib/asterisk/sounds`` on
FreePBX. Debian's ``sounds/en`` is an absolute symlink (via
/etc/alternatives) to ``en_US_f_Allison``: files go where the link points.
For a DEST inside a chroot or container image seen from outside, pass the
root folder so such links are followed inside it, not into the host.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path, PurePosixPath

# Where the wheel puts the prompts, relative to the installation prefix
# (setup.cfg [options.data_files]).
DATA_FILES_DIR = PurePosixPath("share/stasis-dnd/sounds")
DISTRIBUTION = "stasis-dnd"
# Sound formats Asterisk plays; any other file there is not installed.
AUDIO_SUFFIXES = frozenset(
    {".wav", ".wav16", ".sln", ".sln16", ".ulaw", ".alaw", ".g722", ".gsm", ".g729"}
)
# Prompts are data for the asterisk user: readable by all, written by root.
FILE_MODE = 0o644
DIR_MODE = 0o755


class SoundsError(Exception):
    """A problem with the prompts or the destination, told in one sentence."""


class SoundConflictError(SoundsError):
    """Files at the destination differ from the shipped prompts (use force)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        names = ", ".join(str(p) for p in paths)
        super().__init__(
            f"{len(paths)} file(s) already exist with different content: {names}; "
            "keep them, or overwrite them with --force"
        )


def shipped_sounds_dir() -> Path:
    """The folder holding ``<lang>/custom/<prompt>.<format>`` of this installation.

    A source checkout's ``sounds/`` (also an editable install) comes first,
    then the data files of the installed distribution.
    """
    checkout = Path(__file__).resolve().parent.parent / "sounds"
    if _has_prompts(checkout):
        return checkout
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        distribution = None
    installed = _installed_sounds_dir(distribution) if distribution else None
    if installed is not None and _has_prompts(installed):
        return installed
    # Debian's pybuild leaves a RECORD whose data-file paths are wrong (../data/share/...).
    prefixed = Path(sys.prefix) / DATA_FILES_DIR
    if _has_prompts(prefixed):
        return prefixed
    raise SoundsError(
        f"the prompts are missing: neither {checkout} nor the data files of the "
        f"installed {DISTRIBUTION} package ({DATA_FILES_DIR}) hold <lang>/custom/ folders; "
        "reinstall the package"
    )


def _installed_sounds_dir(distribution: metadata.Distribution) -> Path | None:
    """``<prefix>/share/stasis-dnd/sounds`` as recorded in the distribution's RECORD.

    The RECORD knows where pip put the data files for any install scheme
    (venv, system, --user, --prefix), so no prefix is guessed.
    """
    for file in distribution.files or ():
        parts = PurePosixPath(file.as_posix()).parts
        marker = DATA_FILES_DIR.parts
        for end in range(len(marker), len(parts) + 1):
            if parts[end - len(marker) : end] == marker:
                located = distribution.locate_file(PurePosixPath(*parts[:end]))
                return Path(str(located)).resolve()
    return None


def _has_prompts(folder: Path) -> bool:
    return any(lang.is_dir() for lang in folder.glob("*/custom"))


def shipped_prompt_files(source: Path | None = None) -> list[Path]:
    """Every audio file under ``<lang>/custom/`` of ``source`` (default: the shipped sounds)."""
    source = source or shipped_sounds_dir()
    return sorted(
        path
        for path in source.glob("*/custom/*")
        if path.is_file() and path.suffix in AUDIO_SUFFIXES
    )


def install_sounds(
    dest: Path,
    *,
    root: Path | None = None,
    dry_run: bool = False,
    force: bool = False,
    source: Path | None = None,
) -> list[Path]:
    """Copy the shipped ``<lang>/custom/*`` prompts into ``dest/<lang>/custom/``.

    ``dest`` is Asterisk's sounds folder (it must exist). Language folders
    that are symlinks are followed, as Asterisk follows them; one that leads
    outside ``dest`` or nowhere is refused (a chroot or image seen from
    outside), unless ``root`` says which root folder the links live in:
    ``dest`` is then a path inside ``root`` (or under it) and links are
    followed there (``root=Path("/")``: follow them anywhere).

    Files already there with the same content are left alone; files with
    different content raise ``SoundConflictError`` before anything is
    written, unless ``force``. Written files are 0644, created folders 0755,
    each file replaced atomically. Returns the real paths written (with
    ``dry_run``: that would be written; nothing is changed).
    """
    source = source or shipped_sounds_dir()
    real_dest = _inside(dest, root) if root is not None else dest
    if not real_dest.is_dir():
        raise SoundsError(
            f"{dest} is not a folder; give Asterisk's sounds folder (its data directory "
            "+ /sounds, see asterisk -rx 'core show settings'), e.g. /usr/share/asterisk/sounds"
        )
    plan: list[tuple[Path, Path]] = []  # (shipped file, real destination)
    for src in shipped_prompt_files(source):
        relative = src.relative_to(source)
        lang_dir = language_dir(dest, relative.parts[0], root=root)
        plan.append((src, lang_dir.joinpath(*relative.parts[1:])))
    if not plan:
        raise SoundsError(f"no prompts under {source}/<lang>/custom/")

    to_write = [(src, target) for src, target in plan if not _same_file(src, target)]
    conflicts = [target for _, target in to_write if target.exists()]
    if conflicts and not force:
        raise SoundConflictError(conflicts)
    if not dry_run:
        for src, target in to_write:
            _make_dirs(target.parent)
            _copy_atomically(src, target)
    return [target for _, target in to_write]


def language_dir(dest: Path, language: str, *, root: Path | None = None) -> Path:
    """The real folder behind ``dest/<language>`` (see ``install_sounds`` for ``root``).

    Debian: ``sounds/en -> /etc/alternatives/asterisk-prompt-en ->
    /usr/share/asterisk/sounds/en_US_f_Allison``, absolute links that, seen
    from outside a chroot, would lead into the host's own folders.
    """
    if root is not None:
        return _inside(dest / language, root)
    link = dest / language
    if not link.is_symlink():
        return link
    real = link.resolve()
    if not real.is_dir():
        raise SoundsError(
            f"{link} is a symlink to {os.readlink(link)}, which is not a folder here; "
            "if this is a chroot or image, pass its root folder (--root)"
        )
    if not real.is_relative_to(dest.resolve()):
        raise SoundsError(
            f"{link} leads outside {dest}, to {real}; if this is a chroot or image, pass its "
            "root folder (--root ROOT), or --root / to install there anyway"
        )
    return real


def _inside(path: Path, root: Path) -> Path:
    """``path`` (inside ``root``, or under it) with its symlinks followed within ``root``."""
    absolute = Path(os.path.abspath(path))
    inner = absolute
    for form in (Path(os.path.abspath(root)), root.resolve()):
        if absolute.is_relative_to(form):
            inner = absolute.relative_to(form)
            break
    root = root.resolve()
    pending = [part for part in inner.parts if part not in ("/", ".")]
    current = PurePosixPath("/")
    links_followed = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            current = current.parent
            continue
        on_host = root / (current / name).relative_to("/")
        if not on_host.is_symlink():
            current = current / name
            continue
        links_followed += 1
        if links_followed > 40:  # as the kernel's ELOOP limit
            raise SoundsError(f"too many symlinks under {root} resolving {path}")
        target = PurePosixPath(os.readlink(on_host))
        if target.is_absolute():
            current = PurePosixPath("/")
        pending = [part for part in target.parts if part not in ("/", ".")] + pending
    return root / current.relative_to("/")


def _same_file(src: Path, target: Path) -> bool:
    return target.is_file() and filecmp.cmp(src, target, shallow=False)


def _make_dirs(folder: Path) -> None:
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir()
        created.chmod(DIR_MODE)  # not subject to the umask


def _copy_atomically(src: Path, target: Path) -> None:
    # Asterisk may be playing the old file: it must never see half a new one.
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(src, temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

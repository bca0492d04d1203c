"""stasis_dnd.sounds: finding the shipped prompts and installing them into Asterisk.

No Asterisk needed: the destination is a folder laid out like Debian's
/usr/share/asterisk/sounds (language folders that may be symlinks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from stasis_dnd import sounds
from stasis_dnd.sounds import (
    SoundConflictError,
    SoundsError,
    install_sounds,
    language_dir,
    shipped_prompt_files,
    shipped_sounds_dir,
)

REPO = Path(__file__).resolve().parent.parent
# Every prompt with a text in sounds/prompts.toml must reach Asterisk.
PROMPTS = tuple(tomllib.loads((REPO / "sounds" / "prompts.toml").read_text(encoding="utf-8")))
LANGUAGES = ("en", "ru")
FORMATS = ("wav", "sln16", "ulaw", "alaw")
EVERY_FILE = {
    f"{language}/custom/{prompt}.{suffix}"
    for language in LANGUAGES
    for prompt in PROMPTS
    for suffix in FORMATS
}


@pytest.fixture
def source() -> Path:
    return shipped_sounds_dir()


@pytest.fixture
def tight_umask() -> Iterator[None]:
    """Modes must not depend on the installer's umask."""
    old = os.umask(0o077)
    yield
    os.umask(old)


def relative_names(source: Path) -> set[str]:
    return {p.relative_to(source).as_posix() for p in shipped_prompt_files(source)}


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_checkout_ships_every_prompt_of_the_texts_in_every_format(source: Path) -> None:
    assert source == REPO / "sounds"
    assert len(PROMPTS) == 10
    assert relative_names(source) == EVERY_FILE


def test_installs_into_language_folders_readable_by_asterisk(
    tmp_path: Path, source: Path, tight_umask: None
) -> None:
    written = install_sounds(tmp_path, source=source)

    assert {p.relative_to(tmp_path).as_posix() for p in written} == EVERY_FILE
    for src in shipped_prompt_files(source):
        target = tmp_path / src.relative_to(source)
        assert target.read_bytes() == src.read_bytes()
        assert mode(target) == 0o644
    assert mode(tmp_path / "en") == mode(tmp_path / "en" / "custom") == 0o755
    # No temporary files left behind.
    assert not list(tmp_path.rglob(".*"))


def test_second_install_changes_nothing(tmp_path: Path, source: Path) -> None:
    install_sounds(tmp_path, source=source)
    target = tmp_path / "en" / "custom" / "IVR_DND_OPERATORS.wav"
    inode = target.stat().st_ino

    assert install_sounds(tmp_path, source=source) == []
    assert target.stat().st_ino == inode


def test_different_file_is_reported_not_overwritten(tmp_path: Path, source: Path) -> None:
    mine = tmp_path / "ru" / "custom" / "IVR_DND_OPERATORS.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the admin's own recording")

    with pytest.raises(SoundConflictError) as caught:
        install_sounds(tmp_path, source=source)

    assert caught.value.paths == [mine]
    assert "--force" in str(caught.value)
    assert mine.read_bytes() == b"the admin's own recording"
    # Checked before writing: nothing else was installed either.
    assert not (tmp_path / "en").exists()


def test_force_overwrites_a_different_file(tmp_path: Path, source: Path) -> None:
    mine = tmp_path / "ru" / "custom" / "IVR_DND_OPERATORS.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"old")

    written = install_sounds(tmp_path, source=source, force=True)

    assert mine in written
    assert mine.read_bytes() == (source / "ru" / "custom" / "IVR_DND_OPERATORS.wav").read_bytes()


def test_dry_run_lists_files_and_writes_nothing(tmp_path: Path, source: Path) -> None:
    planned = install_sounds(tmp_path, source=source, dry_run=True)

    assert len(planned) == len(shipped_prompt_files(source))
    assert list(tmp_path.iterdir()) == []


def test_dry_run_reports_conflicts_too(tmp_path: Path, source: Path) -> None:
    mine = tmp_path / "en" / "custom" / "IVR_DND_CALLBACK_CONFIRMED.ulaw"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"x")

    with pytest.raises(SoundConflictError):
        install_sounds(tmp_path, source=source, dry_run=True)
    assert install_sounds(tmp_path, source=source, dry_run=True, force=True)
    assert mine.read_bytes() == b"x"


def test_follows_a_language_symlink_inside_the_destination(tmp_path: Path, source: Path) -> None:
    # A host's Debian: sounds/en -> /usr/share/asterisk/sounds/en_US_f_Allison
    # (via /etc/alternatives), absolute, leading back inside the sounds folder.
    dest = tmp_path / "sounds"
    voice = dest / "en_US_f_Allison"
    voice.mkdir(parents=True)
    alternative = tmp_path / "alternatives" / "asterisk-prompt-en"
    alternative.parent.mkdir()
    alternative.symlink_to(voice)
    (dest / "en").symlink_to(alternative)

    written = install_sounds(dest, source=source)

    assert voice / "custom" / "IVR_DND_OPERATORS.wav" in written
    assert (voice / "custom" / "IVR_DND_OPERATORS.ulaw").is_file()
    assert (dest / "en").is_symlink()


def test_follows_relative_language_symlink(tmp_path: Path, source: Path) -> None:
    (tmp_path / "ru_RU_voice").mkdir()
    (tmp_path / "ru").symlink_to("ru_RU_voice")

    install_sounds(tmp_path, source=source)

    assert (tmp_path / "ru_RU_voice" / "custom" / "IVR_DND_OPERATORS.wav").is_file()


@pytest.fixture
def chroot(tmp_path: Path) -> Path:
    """A root folder laid out like Debian's asterisk-core-sounds packages.

    Its absolute links name paths that do not exist on this host (a unique
    prefix), so following them on the host would fail or write elsewhere.
    """
    root = tmp_path / "root"
    unique = f"opt/stasis-dnd-test-{uuid.uuid4().hex}"
    sounds_dir = root / unique / "sounds"
    for voice in ("en_US_f_Allison", "ru_RU_f_IvrvoiceRU"):
        (sounds_dir / voice).mkdir(parents=True)
    alternatives = root / "etc" / "alternatives"
    alternatives.mkdir(parents=True)
    (alternatives / "asterisk-prompt-en").symlink_to(f"/{unique}/sounds/en_US_f_Allison")
    (alternatives / "asterisk-prompt-ru").symlink_to(f"/{unique}/sounds/ru_RU_f_IvrvoiceRU")
    (sounds_dir / "en").symlink_to("/etc/alternatives/asterisk-prompt-en")
    (sounds_dir / "ru").symlink_to("/etc/alternatives/asterisk-prompt-ru")
    return sounds_dir


def test_chroot_seen_from_outside_needs_its_root(chroot: Path, source: Path) -> None:
    with pytest.raises(SoundsError, match="--root"):
        install_sounds(chroot, source=source)


@pytest.mark.parametrize("given", ["host path", "path inside the root"])
def test_chroot_links_are_followed_inside_the_root(chroot: Path, source: Path, given: str) -> None:
    root = chroot.parents[2]
    dest = chroot if given == "host path" else Path("/") / chroot.relative_to(root)

    assert language_dir(dest, "en", root=root) == chroot / "en_US_f_Allison"
    written = install_sounds(dest, root=root, source=source)

    assert len(written) == len(shipped_prompt_files(source))
    assert (chroot / "en_US_f_Allison" / "custom" / "IVR_DND_OPERATORS.wav").is_file()
    assert (chroot / "ru_RU_f_IvrvoiceRU" / "custom" / "IVR_DND_OPERATORS.wav").is_file()
    assert all(path.is_relative_to(root) for path in written)


def test_symlink_leading_outside_destination_is_refused_unless_root_is_slash(
    tmp_path: Path, source: Path
) -> None:
    elsewhere = tmp_path / "other-disk" / "en"
    elsewhere.mkdir(parents=True)
    dest = tmp_path / "sounds"
    dest.mkdir()
    (dest / "en").symlink_to(elsewhere)

    with pytest.raises(SoundsError, match="leads outside"):
        install_sounds(dest, source=source)
    install_sounds(dest, root=Path("/"), source=source)
    assert (elsewhere / "custom" / "IVR_DND_OPERATORS.wav").is_file()


def test_dangling_language_symlink_is_an_error(tmp_path: Path, source: Path) -> None:
    (tmp_path / "en").symlink_to(tmp_path / "nowhere")

    with pytest.raises(SoundsError, match="not a folder"):
        install_sounds(tmp_path, source=source)


def test_missing_destination_is_an_error(tmp_path: Path, source: Path) -> None:
    with pytest.raises(SoundsError, match="core show settings"):
        install_sounds(tmp_path / "sound", source=source)


def test_installed_package_finds_its_data_files(tmp_path: Path) -> None:
    # A wheel installed into a prefix: RECORD paths are relative to site-packages.
    site = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages"
    dist_info = site / "stasis_dnd-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    data = tmp_path / "prefix" / "share" / "stasis-dnd" / "sounds" / "en" / "custom"
    data.mkdir(parents=True)
    (data / "IVR_DND_OPERATORS.wav").write_bytes(b"RIFF")
    (dist_info / "RECORD").write_text(
        "stasis_dnd/__init__.py,,\n"
        "../../../share/stasis-dnd/sounds/en/custom/IVR_DND_OPERATORS.wav,,\n"
    )

    found = sounds._installed_sounds_dir(metadata.PathDistribution(dist_info))

    assert found == tmp_path / "prefix" / "share" / "stasis-dnd" / "sounds"


@pytest.mark.slow
def test_wheel_ships_the_prompts_and_finds_them_when_installed(tmp_path: Path) -> None:
    # Needs setup.cfg [options.data_files] share/stasis-dnd/sounds/<lang>/custom.
    tree = tmp_path / "src"
    tree.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        (tree / name).write_bytes((REPO / name).read_bytes())
    for folder in ("stasis_dnd", "sounds", "systemd"):
        subprocess.run(["cp", "-r", str(REPO / folder), str(tree)], check=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(tree)], check=True
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    for src in shipped_prompt_files(REPO / "sounds"):
        relative = src.relative_to(REPO / "sounds").as_posix()
        assert f"stasis_dnd-0.1.0.data/data/share/stasis-dnd/sounds/{relative}" in names

    # A throwaway venv of its own: pip run by this interpreter would uninstall
    # the developer's editable stasis-dnd from .venv while installing the wheel.
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True)
    python = prefix / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps", wheel],
        check=True,
    )
    found = subprocess.run(
        [python, "-c", "from stasis_dnd.sounds import *; print(shipped_sounds_dir())"],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(found.stdout.strip()) == prefix / "share" / "stasis-dnd" / "sounds"
    # The units travel the same way, for `stasis-dnd install-unit`.
    unit = subprocess.run(
        [python, "-c", "from stasis_dnd.cli.units import *; print(shipped_unit(UNITS[1]))"],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(unit.stdout.strip()) == prefix / "share/stasis-dnd/systemd/stasis-dnd@.service"

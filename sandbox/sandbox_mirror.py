"""Which Debian mirror the sandbox is built from: the one this machine's apt uses.

apt's sources are read in apt's order (`sources.list`, then `sources.list.d/`
by name), in both formats: one-line `deb URI SUITE ...` (`*.list`) and deb822
paragraphs with `Types:` / `URIs:` / `Suites:` (`*.sources`). The first `deb`
source that is a Debian archive (its URI ends in `/debian`) and not the
security archive is the mirror. STASIS_DND_SANDBOX_MIRROR, when set, wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from sandbox_config import SandboxError

APT_DIR = Path("/etc/apt")


def apt_mirror(apt_dir: Path = APT_DIR) -> str:
    """The Debian mirror named by the apt sources under `apt_dir`; SandboxError if none."""
    for uri, suites in _deb_sources(apt_dir):
        if _is_debian_archive(uri, suites):
            return uri.rstrip("/")
    raise SandboxError(
        f"no Debian mirror in the apt sources ({apt_dir}/sources.list, "
        f"{apt_dir}/sources.list.d/*.list or *.sources): set STASIS_DND_SANDBOX_MIRROR "
        "to the URL of a Debian mirror (the folder that holds dists/ and pool/)"
    )


def _deb_sources(apt_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every binary-package source, in apt's order."""
    parts = apt_dir / "sources.list.d"
    files = [apt_dir / "sources.list"]
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:  # missing or unreadable: apt would not use it either
            continue
        if path.suffix == ".sources":
            yield from _deb822_sources(text)
        else:
            yield from _one_line_sources(text)


def _one_line_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if words:
            yield words[0], words[1:2]


def _deb822_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    for paragraph in _paragraphs(text):
        if "deb" not in paragraph.get("types", "").split():
            continue
        if paragraph.get("enabled", "yes").strip().lower() == "no":
            continue
        suites = paragraph.get("suites", "").split()
        for uri in paragraph.get("uris", "").split():
            yield uri, suites


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as {lower-case field: value}; continuation lines joined."""
    fields: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0] in " \t" and last:
            fields[last] += " " + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            last = name.strip().lower()
            fields[last] = value.strip()


def _is_debian_archive(uri: str, suites: list[str]) -> bool:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if any(suite.endswith("-security") or "/updates" in suite for suite in suites):
        return False
    return parts.path.rstrip("/").rsplit("/", 1)[-1] == "debian"

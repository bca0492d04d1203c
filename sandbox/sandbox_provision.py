"""Building the sandbox's chroot (used by sandbox/asterisk).

A Debian-unstable root made with debootstrap, cached and reused: it is built
in a ``*.tmp-*`` folder and renamed when complete, with a stamp file listing
its packages, so an interrupted build is never taken for a valid root. Also
the mounts in a root (``/proc`` while Asterisk runs) and removing a root
without following a mount into the host. Standard library only: the command
runs under the system python3.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from sandbox_config import SandboxError, Settings
from sandbox_mirror import apt_mirror

PROG = "sandbox/asterisk"
STAMP = ".stasis-dnd-sandbox"


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text[-lines:])


# --- mounts -----------------------------------------------------------------


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(str(p)), reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", str(point)], check=False, capture_output=True)
    for point in mounts_under(path):  # busy: detach lazily
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise SandboxError(f"cannot unmount {', '.join(map(str, left))}")


def mount_proc(root: Path) -> None:
    if not any(p == (root / "proc").resolve() for p in mounts_under(root)):
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)


def remove_tree(path: Path) -> None:
    """Delete a (half-built) root, never following a mount into the host."""
    if not path.exists():
        return
    unmount_all(path)
    shutil.rmtree(path)


# --- provisioning ---------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("must run as root (debootstrap, chroot, mount)")


def is_provisioned(s: Settings) -> bool:
    stamp = s.root / STAMP
    return stamp.is_file() and stamp.read_text() == s.stamp_text


def check_mirror(mirror: str) -> None:
    url = urllib.parse.urlsplit(mirror)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=10):
            pass
    except OSError as e:
        raise SandboxError(f"no network to the Debian mirror {mirror} ({e})") from None


def ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    log("installing debootstrap on the host (apt-get install -y debootstrap)")
    result = subprocess.run(
        ["apt-get", "install", "-y", "debootstrap"],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if result.returncode != 0 or not shutil.which("debootstrap"):
        raise SandboxError(
            "debootstrap is missing and apt-get could not install it:\n"
            + (result.stdout + result.stderr)[-2000:]
        )


def provision(s: Settings, stop_started: Callable[[Settings], None]) -> Path:
    """Build the chroot unless a complete one for this package list exists.

    ``stop_started`` stops an Asterisk started in an incomplete or outdated
    root before that root is removed.
    """
    require_root()
    if is_provisioned(s):
        return s.root
    if s.root.exists():
        stop_started(s)
        log(f"removing incomplete or outdated {s.root}")
        remove_tree(s.root)
    mirror = s.mirror or apt_mirror()
    check_mirror(mirror)
    ensure_debootstrap()
    s.cache.mkdir(parents=True, exist_ok=True)
    debs = s.cache / "debs"
    debs.mkdir(exist_ok=True)
    for stale in s.cache.glob(s.root.name + ".tmp-*"):
        log(f"removing interrupted build {stale}")
        remove_tree(stale)

    # Build beside the final place, rename when complete: an interrupted build
    # never looks like a valid root.
    build = Path(tempfile.mkdtemp(prefix=s.root.name + ".tmp-", dir=s.cache))
    build_log = s.cache / (s.root.name + ".build.log")
    log(f"building {s.root} from {s.suite} (about 1-2 minutes; log: {build_log})")
    started = time.monotonic()
    try:
        with open(build_log, "w") as out:
            result = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--cache-dir={debs}",
                    "--include=" + ",".join(s.packages),
                    s.suite,
                    str(build),
                    mirror,
                ],
                check=False,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if result.returncode != 0:
            text = build_log.read_text(errors="replace")
            missing = [line for line in text.splitlines() if "Couldn't find" in line]
            if missing:
                raise SandboxError(
                    "Debian "
                    + s.suite
                    + " lacks a package: "
                    + "; ".join(missing)
                    + " (edit PACKAGES in sandbox/sandbox_config.py"
                    + " or STASIS_DND_SANDBOX_EXTRA_PACKAGES)"
                )
            if "Failed getting release file" in text:
                raise SandboxError(f"no network to the Debian mirror {mirror} (no Release file)")
            raise SandboxError(
                f"debootstrap failed (exit {result.returncode}); end of {build_log}:\n"
                + tail(build_log)
            )
        check_root_contents(build)
        # Keep Debian's demo configuration out of the way; start writes its own.
        (build / "etc/asterisk").rename(build / "etc/asterisk.debian")
        (build / "etc/asterisk").mkdir()
        (build / STAMP).write_text(s.stamp_text)
        unmount_all(build)
        build.rename(s.root)
    except BaseException:
        remove_tree(build)
        raise
    log(f"provisioned in {time.monotonic() - started:.0f} s")
    return s.root


def check_root_contents(root: Path) -> None:
    needed = [
        "usr/sbin/asterisk",
        "usr/lib/x86_64-linux-gnu/asterisk/modules/func_curl.so",
        "usr/lib/x86_64-linux-gnu/asterisk/modules/res_ari.so",
        "usr/share/asterisk/sounds/en",
        "usr/share/asterisk/sounds/ru",
        "usr/bin/php",
        "dev/null",
        "dev/urandom",
    ]
    missing = [n for n in needed if not os.path.lexists(root / n)]
    if missing:
        raise SandboxError("the built root lacks " + ", ".join(missing))

"""A Debian 12 root with a real systemd as PID 1, for testing the Debian package.

`provision()` builds the root once with debootstrap (from the Debian mirror of
this machine's apt sources) and caches it under /var/cache/stasis-dnd, keyed
by suite and package list, as sandbox/asterisk caches its Asterisk root.
`Container` boots a fresh copy of it: new pid and mount namespaces
(`unshare`), the copy bind-mounted onto itself (so that `ProtectSystem=strict`
works), `/proc`, `/sys`, `/dev` and a tmpfs `/run` inside, and
`chroot ROOT /lib/systemd/systemd --system` as PID 1; commands reach it with
`nsenter`. It shares the host's network, so the sandbox Asterisk and a CRM
emulator on 127.0.0.1 are reachable from inside. Needs root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox_config import SandboxError
from sandbox_mirror import apt_mirror
from sandbox_provision import check_mirror, ensure_debootstrap, mounts_under, remove_tree

SUITE = "bookworm"
# systemd, and the package's dependencies from Debian 12, so that `apt install
# ./stasis-dnd_*.deb` needs no network; python3-venv for the pip way.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "adduser",
    "python3",
    "python3-requests",
    "python3-websocket",
    "python3-prometheus-client",
    "python3-venv",
)
# Units that never settle in this container (no logind seat, no console, no dbus).
MASKED = (
    "systemd-logind.service",
    "console-getty.service",
    "getty@tty1.service",
    "getty.target",
    "dbus.service",
    "dbus.socket",
)
CACHE = Path(os.environ.get("STASIS_DND_SANDBOX_CACHE", "/var/cache/stasis-dnd"))
STAMP = ".stasis-dnd-systemd-root"
# The version the upgrade test builds the same tree as.
NEWER = "0.1.0+upgrade1"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def stamp_text() -> str:
    return f"{SUITE}\n" + "\n".join(PACKAGES + MASKED) + "\n"


def cached_root() -> Path:
    key = hashlib.sha256(stamp_text().encode()).hexdigest()[:12]
    return CACHE / f"systemd-{SUITE}-{key}"


def provision() -> Path:
    """The cached root, built first if missing (about 1-2 minutes with network)."""
    root = cached_root()
    stamp = root / STAMP
    if stamp.is_file() and stamp.read_text() == stamp_text():
        return root
    remove_tree(root)
    mirror = os.environ.get("STASIS_DND_SANDBOX_MIRROR") or apt_mirror()
    check_mirror(mirror)
    ensure_debootstrap()
    CACHE.mkdir(parents=True, exist_ok=True)
    debs = CACHE / "debs"
    debs.mkdir(exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=CACHE))
    build_log = CACHE / f"{root.name}.build.log"
    try:
        with build_log.open("w") as out:
            result = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--cache-dir={debs}",
                    "--include=" + ",".join(PACKAGES),
                    SUITE,
                    str(build),
                    mirror,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-20:])
            raise SandboxError(f"debootstrap {SUITE} failed ({build_log}):\n{tail}")
        build.chmod(0o755)
        for unit in MASKED:
            (build / "etc/systemd/system" / unit).symlink_to("/dev/null")
        (build / STAMP).write_text(stamp_text())
        build.rename(root)
    except BaseException:
        remove_tree(build)
        raise
    return root


class Container:
    """A fresh copy of the cached root, booted with systemd as PID 1."""

    def __init__(self, base: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="systemd-run-", dir=CACHE))
        # A copy, not the cache: every run starts from the same clean root.
        subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{base}/.", str(self.root)],
            check=True,
        )
        self.pid = 0
        self._unshare: subprocess.Popen[bytes] | None = None

    def boot(self, timeout: float = 60.0) -> None:
        root = str(self.root)
        script = (
            f'set -e; R="{root}"; mount --bind "$R" "$R"; mount -t proc proc "$R/proc"; '
            'mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"; '
            'mount -t tmpfs tmpfs "$R/run"; '
            'exec chroot "$R" /usr/bin/env -i container=docker /lib/systemd/systemd --system'
        )
        with (self.root / "boot.log").open("wb") as log:
            self._unshare = subprocess.Popen(
                [
                    *("unshare", "--pid", "--fork", "--mount", "--uts", "--ipc"),
                    *("--propagation", "private", "sh", "-c", script),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.pid:
            self.pid = self._systemd_pid()
            self._check_alive(deadline)
        while True:
            state = self.run("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            self._check_alive(deadline)
            time.sleep(0.5)

    def _systemd_pid(self) -> int:
        assert self._unshare is not None
        children = Path(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children")
        try:
            for child in children.read_text().split():
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return int(child)
        except OSError:
            pass
        return 0

    def _check_alive(self, deadline: float) -> None:
        assert self._unshare is not None
        log = (self.root / "boot.log").read_text(errors="replace")
        if self._unshare.poll() is not None:
            raise SandboxError(f"systemd in {self.root} exited:\n{log}")
        if time.monotonic() > deadline:
            raise SandboxError(f"systemd in {self.root} did not boot in time:\n{log}")
        time.sleep(0.1)

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float = 300.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`sh -c command` inside, as root, in /root, with a clean environment (plus `env`)."""
        extra = [f"{name}={value}" for name, value in (env or {}).items()]
        result = subprocess.run(
            [
                *("nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w"),
                *("env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"),
                *extra,
                *("sh", "-c", f"cd /root && {command}"),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{command!r} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """A path inside the container, as seen from the host."""
        return self.root / inside.lstrip("/")

    def wait(self, command: str, expected: str, timeout: float = 60.0) -> str:
        """Run `command` until its output contains `expected`; return that output."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.run(command, check=False)
            output = result.stdout + result.stderr
            if expected in output:
                return output
            if time.monotonic() > deadline:
                raise AssertionError(f"{command!r} never showed {expected!r}; last:\n{output}")
            time.sleep(0.5)

    def destroy(self) -> None:
        """Kill PID 1 (and so everything inside), unmount, delete the copy."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._unshare is not None:
            self._unshare.wait(timeout=30)
        left = mounts_under(self.root)
        if left:  # the mounts lived in the container's namespace; none should be here
            subprocess.run(["umount", "-l", *map(str, left)], check=False)
        remove_tree(self.root)


def cp_into(container: Container, source: Path, inside: str) -> str:
    """Copy a host file into the container; return its path inside."""
    shutil.copy(source, container.path(inside))
    return inside


@dataclass(frozen=True)
class Debs:
    """The package as scripts/deb builds it, and the same tree as version NEWER."""

    first: Path
    newer: Path


def copy_checkout(container: Container, repo: Path, inside: str) -> str:
    """The files git knows in `repo` (committed or not), copied to `inside`."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = container.path(inside)
    for name in filter(None, files):
        source = repo / os.fsdecode(name)
        if source.is_file():
            (target / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / os.fsdecode(name), follow_symlinks=False)
    return inside


def pip_settings(container: Container) -> dict[str, str]:
    """This machine's pip network settings (CA bundle, proxy), carried into the container
    as apt's sources are: pip inside reaches the index the way pip outside does."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in ("PIP_CERT", "PIP_INDEX_URL", "HTTPS_PROXY", "https_proxy", "NO_PROXY")
    }
    cert = env.get("PIP_CERT")
    if cert and Path(cert).is_file():
        container.path(cert).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, container.path(cert))
    return env

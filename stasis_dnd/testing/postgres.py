"""A throwaway PostgreSQL server for tests: Debian's own binaries (package
`postgresql`), a cluster made by `initdb` in a temporary folder, started
with `pg_ctl` on 127.0.0.1 and a free port, removed after.

    with TempPostgres() as pg:
        url = pg.url                 # postgresql://stasis@127.0.0.1:PORT/postgres
        pg.stop(); pg.start()        # the same cluster again (a server restart)

PostgreSQL refuses to run as root: as root, the cluster belongs to the
package's `postgres` user and its programs run as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

# Where Debian's postgresql-NN packages put the server programs.
DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
INSTALL_HINT = "install Debian's PostgreSQL: apt-get install postgresql"
# The role the tests connect as (a superuser of the throwaway cluster).
ROLE = "stasis"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server programs on this machine; the message says what to install."""


def server_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (raises PostgresUnavailable)."""
    found = sorted(
        (p for p in DEBIAN_BINDIRS.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable(f"no PostgreSQL server in {DEBIAN_BINDIRS}; {INSTALL_HINT}")
    return found[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TempPostgres:
    """One throwaway cluster; `password` given: the role must log in with it
    (scram-sha-256), else any local login is trusted."""

    def __init__(self, *, password: str | None = None, port: int | None = None) -> None:
        self.bindir = server_bindir()
        self.password = password
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="stasis-dnd-pg-"))
        self.data = self.folder / "data"
        self._user = _unprivileged_user()
        self._made = False

    @property
    def url(self) -> str:
        """A libpq URL for the role, without the password."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/postgres"

    def url_with_password(self) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/postgres"

    def start(self) -> TempPostgres:
        if not self._made:
            self._initdb()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1"
        options += f" -c unix_socket_directories={self.folder}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`mode`: smart, fast or immediate); the cluster stays."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_text(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.remove()

    def _initdb(self) -> None:
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        args = ["initdb", "-D", str(self.data), "-U", ROLE, "-E", "UTF8", "--no-sync"]
        if self.password is None:
            args += ["-A", "trust"]
        else:
            secret = self.folder / "pwfile"
            secret.write_text(self.password + "\n")
            if self._user is not None:
                os.chown(secret, self._user.pw_uid, self._user.pw_gid)
            args += ["-A", "scram-sha-256", f"--pwfile={secret}"]
        self._run(*args)
        self._made = True

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user.pw_name, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
                f"\n{self.log_text()[-2000:]}"
            )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run the server as: none needed unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")  # made by Debian's postgresql-common
    except KeyError:
        raise PostgresUnavailable(f"no postgres user on this machine; {INSTALL_HINT}") from None

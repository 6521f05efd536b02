"""A PostgreSQL server of the test's own, to be restarted and killed at will.

The shared server at 127.0.0.1:5432 is never touched: this one is made by ``initdb`` in a
temporary directory and listens on a free loopback port. Its binaries are Debian's
(/usr/lib/postgresql/15/bin) when installed, else those bundled with the ``pgserver``
package the embedded mode uses. As root, it runs as ``postgres`` (or pgserver's own user),
since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.chaos.processes import free_port

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")


def binaries() -> Path:
    if (DEBIAN_BIN / "pg_ctl").exists():
        return DEBIAN_BIN
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"


class PrivatePostgres:
    def __init__(self) -> None:
        # Not pytest's tmp_path: the server's own user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="lms-chaos-pg-"))
        self.pgdata = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.bin = binaries()
        self.user = system_user()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def tool(self, name: str, *args: str, timeout: float = 120) -> None:
        subprocess.run([str(self.bin / name), *args], check=True, user=self.user,
                       cwd=self.root, timeout=timeout, capture_output=True)

    def ctl(self, *args: str) -> None:
        self.tool("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60",
                  *args)

    def start(self) -> None:
        if not self.pgdata.exists():
            self.tool("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-sync")
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                # Only the processes die in these tests, never the machine: the page cache
                # keeps what fsync would have written.
                conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                           "max_connections = 60\nshared_buffers = 32MB\n")
        self.ctl("start")

    def restart(self, mode: str) -> None:
        """``fast`` ends every session and shuts down cleanly; ``immediate`` kills the
        server, which recovers from its WAL on start."""
        self.ctl("-m", mode, "restart")
        self.restarts += 1

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

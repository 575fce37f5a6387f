"""A PostgreSQL server of a test's own (initdb into a temporary folder, its own port),
so a test can stop and restart it without disturbing the shared one.

    pg = PrivatePostgres(port).start()
    pg.url          # postgres://statehouse@127.0.0.1:<port>/statehouse (trust auth)
    pg.restart(down_s=3)
    pg.stop()       # and removes the folder

initdb refuses to run as root, so when the tests run as root the server runs as the
``postgres`` user (through ``runuser``) in a folder owned by it.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise FileNotFoundError("no PostgreSQL server binaries (initdb) found")


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parts[-3]
    return tuple(int(n) for n in part.split(".") if n.isdigit())


def available() -> bool:
    try:
        _bin_dir()
    except FileNotFoundError:
        return False
    return os.geteuid() != 0 or _user_exists("postgres")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on ``port``, with a database ``statehouse``."""

    database = "statehouse"
    role = "statehouse"

    def __init__(self, port: int):
        self.port = port
        self.bin = _bin_dir()
        self.as_root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="statehouse-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        if self.as_root:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.url = f"postgres://{self.role}@127.0.0.1:{port}/{self.database}"

    def _run(self, *command, check=True):
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(
            [*prefix, *command], capture_output=True, text=True, check=check, timeout=120
        )

    def _ctl(self, *args, check=True):
        return self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args, check=check)

    def start(self) -> "PrivatePostgres":
        fresh = not self.data.exists()
        if fresh:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.role,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            )
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._ctl("-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        if fresh:
            self._run(
                str(self.bin / "createdb"),
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", self.role, self.database),
            )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are ended, "terminating connection due to
        administrator command")."""
        self._ctl("-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, down_s: float = 3.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def is_up(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop(mode="immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

"""Throwaway PostgreSQL servers for the test suite.

``PostgresServer`` starts a private cluster in a temporary folder and removes it on
``stop()``. ``postgres_from_env()`` reuses an existing server named by
``COMMCREDITS_TEST_POSTGRES_URL`` instead. Both share the same small API: ``.url``,
``create_database()``, ``drop_database()`` and ``stop()``.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

ENV_URL = "COMMCREDITS_TEST_POSTGRES_URL"
_INSTALL_HINT = "run scripts/install-system-deps (as root) to install PostgreSQL"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bin_dir() -> Path:
    """The folder holding initdb/pg_ctl: the highest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)
    if candidates:
        return candidates[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError(f"PostgreSQL binaries (initdb, pg_ctl) not found; {_INSTALL_HINT}")
    return Path(pg_ctl).parent


class PostgresAdmin:
    """Database management against a server reachable at ``url`` (a SQLAlchemy URL)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def database_url(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally as a copy of ``template``); return its URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self._execute(statement)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def stop(self) -> None:
        """Nothing to stop for a server this object does not own."""

    def _execute(self, statement: sql.Composed) -> None:
        url: URL = make_url(self.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PostgresServer(PostgresAdmin):
    """A private PostgreSQL cluster on 127.0.0.1, started on construction."""

    def __init__(self, start_timeout: int = 60) -> None:
        self.bin_dir = find_bin_dir()
        self.directory = Path(tempfile.mkdtemp(prefix="commcredits-pg-"))
        self.data_dir = self.directory / "data"
        self.log_file = self.directory / "server.log"
        self._as_postgres = os.geteuid() == 0
        self._stopped = False
        atexit.register(self.stop)
        try:
            if self._as_postgres:
                # initdb refuses to run as root: the cluster belongs to the postgres user.
                shutil.chown(self.directory, user="postgres", group="postgres")
            self._initdb()
            self.port = self._start(start_timeout)
        except BaseException:
            self.stop()
            raise
        super().__init__(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres")

    def stop(self) -> None:
        """Stop the server immediately and delete its folder; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, cwd=self.directory, capture_output=True, text=True, check=False
        )

    def _initdb(self) -> None:
        base = ["-D", str(self.data_dir), "-A", "trust", "-U", "postgres"]
        base += ["--encoding=UTF8", "--no-sync"]
        for locale in ("C.UTF-8", "C"):
            result = self._run("initdb", *base, f"--locale={locale}")
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": "200",
            # Throwaway test data: durability is not needed, speed is.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start(self, timeout: int, attempts: int = 3) -> int:
        for _ in range(attempts):
            port = free_port()
            result = self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(timeout), "-o", f"-p {port}",
            )  # fmt: skip
            if result.returncode == 0:
                return port
            log = self._log_tail()
            if "could not bind" not in log:
                break  # a real failure; only a port lost to a race is worth a retry
        raise RuntimeError(
            f"PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}\n--- server log (tail) ---\n{log}"
        )

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])


def postgres_from_env() -> PostgresAdmin | None:
    """The server named by COMMCREDITS_TEST_POSTGRES_URL, or None when it is not set."""
    url = os.environ.get(ENV_URL)
    return PostgresAdmin(url) if url else None


def start_postgres() -> PostgresAdmin:
    """The server from the environment if configured, else a freshly started one."""
    return postgres_from_env() or PostgresServer()


if __name__ == "__main__":
    began = time.monotonic()
    with PostgresServer() as server:
        print(f"{server.url} ready in {time.monotonic() - began:.2f}s")

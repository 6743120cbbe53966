"""The real server as a separate process, for tests that kill it and start it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.postgres import free_port

OPERATOR_KEY = "stress-operator-key"


def command() -> list[str]:
    script = Path(sys.executable).with_name("commcredits")
    return [str(script)] if script.exists() else [sys.executable, "-m", "commcredits.cli"]


def server_env(folder: Path, **settings: str) -> dict[str, str]:
    """The environment of every process of one run: one journal of card charges (so a retry
    after a restart charges once), one mail folder, a simulated clock."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMCREDITS_")}
    env.update(
        COMMCREDITS_CONFIG="/nonexistent/commcredits.toml",
        COMMCREDITS_OPERATOR_KEY=OPERATOR_KEY,
        COMMCREDITS_SANDBOX_JOURNAL=str(folder / "sandbox-payments.jsonl"),
        COMMCREDITS_MAIL_SPOOL_DIR=str(folder / "mail"),
        COMMCREDITS_CLOCK="simulated",
        COMMCREDITS_CLOCK_START="2026-03-10T09:00:00+00:00",
        COMMCREDITS_LOG_LEVEL="WARNING",
    )
    env.update({f"COMMCREDITS_{k.upper()}": v for k, v in settings.items()})
    return env


class Server:
    """``commcredits serve`` on a free port; :meth:`kill` is SIGKILL, nothing graceful."""

    def __init__(self, database_url: str, folder: Path, **settings: str) -> None:
        self.database_url = database_url
        self.folder = folder
        self.env = server_env(folder, **settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = folder / "server.log"

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait until it answers; returns the seconds that took."""
        began = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *command(),
                    "serve",
                    "--port",
                    str(self.port),
                    "--database-url",
                    self.database_url,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within {timeout} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is cut off."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a ``commcredits`` command against the same database and settings."""
        return subprocess.run(
            [*command(), *args, "--database-url", self.database_url],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

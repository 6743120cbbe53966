"""Real processes on loopback: commcredits serving on SQLite (system clock), Kamailio with the
shipped configuration, and SIPp as the carrier (UAS) and as the phones (UAC)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "integrations" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).parent / "scenarios"
OPERATOR_KEY = "cck_sip.operator-key-for-sip-tests"
SLICE_SECONDS = 10
"""commcredits' call slice in these tests: a few seconds, so a call asks for several.
Kamailio asks 3 s before a slice ends, which must be under half of it."""

RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,currency,"
    "effective_from,effective_to,description\n"
    "outbound,,GB,any,0.6000,,1,1,USD,2020-01-01,,GB per second (test)\n"
    "outbound,,US,any,0.6000,,1,1,USD,2020-01-01,,US per second (test)\n"
)
"""0.01 per second to the United Kingdom: a call's charge is its duration in cents."""

_NUMBERS = itertools.count(1000)


def require_sip_tools() -> None:
    """Skip the test when Kamailio or SIPp is not installed (the edge check needs neither)."""
    if shutil.which("kamailio") is None or shutil.which("sipp") is None:
        pytest.skip("kamailio and sipp are not installed (scripts/install-system-deps --sip)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[Any], *, group: bool = False) -> None:
    """Stop one process this suite started (and, for Kamailio, the children it forked)."""
    if process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=10)


class Commcredits:
    """`commcredits serve` on SQLite in a folder of its own; can be stopped and started again
    on the same database and port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COMMCREDITS_")}
        self.env.update(
            COMMCREDITS_CONFIG=str(folder / "none.toml"),
            COMMCREDITS_DATABASE_URL=f"sqlite:///{folder / 'commcredits.db'}",
            COMMCREDITS_CLOCK="system",
            COMMCREDITS_OPERATOR_KEY=OPERATOR_KEY,
            COMMCREDITS_CALL_SLICE_SECONDS=str(SLICE_SECONDS),
            COMMCREDITS_LOG_LEVEL="WARNING",
        )
        self.telephony_key = ""

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "commcredits.cli", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def start(self) -> None:
        log = (self.folder / "serve.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "commcredits.cli", "serve", "--port", str(self.port)],
            cwd=self.folder,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"commcredits did not start:\n{(self.folder / 'serve.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


@contextmanager
def serving_commcredits(folder: Path) -> Iterator[Commcredits]:
    """A new commcredits on its own database, with a telephony key and the test rates."""
    server = Commcredits(folder)
    server.cli("db", "upgrade")
    issued = server.cli("keys", "create-telephony", "--json")
    server.telephony_key = json.loads(issued)["key"]
    server.start()
    try:
        loaded = httpx.put(
            f"{server.url}/v1/rates",
            content=RATES,
            headers={"Authorization": f"Bearer {OPERATOR_KEY}", "Content-Type": "text/csv"},
        )
        assert loaded.status_code == 200, loaded.text
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def commcredits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commcredits]:
    with serving_commcredits(tmp_path_factory.mktemp("commcredits")) as server:
        yield server


@pytest.fixture(scope="package")
def carrier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """SIPp as the carrier gateway: answers every call and takes the BYE."""
    require_sip_tools()
    folder = tmp_path_factory.mktemp("carrier")
    port = free_udp_port()
    process = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(SCENARIOS / "uas.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-nostdin",
            "-nd",
        ],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "sipp.log").open("w"),
    )
    time.sleep(0.3)
    assert process.poll() is None, (folder / "sipp.log").read_text()
    yield port
    _stop(process)


@dataclass
class Kamailio:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    defines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return (self.folder / "kamailio.log").read_text(errors="replace")


def start_kamailio(
    folder: Path, commcredits: Commcredits, carrier: int, **settings: str
) -> Kamailio:
    """Kamailio with the shipped configuration, its settings given on the command line."""
    require_sip_tools()
    port = free_udp_port()
    defines = {
        "COMMCREDITS_URL": f'"{commcredits.url}"',
        "COMMCREDITS_KEY": f'"{commcredits.telephony_key}"',
        "CARRIER_GATEWAY": f'"sip:127.0.0.1:{carrier}"',
        "LISTEN_ADDRESS": f"udp:127.0.0.1:{port}",
        "WORKERS": "8",
        "COMMCREDITS_TIMEOUT": "1",
        **settings,
    }
    command = ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-m", "64", "-M", "8"]
    command += ["-Y", str(folder), "-P", str(folder / "kamailio.pid"), "-w", str(folder)]
    for name, value in defines.items():
        command += ["-A", f"{name}={value}"]
    kamailio = Kamailio(port, folder)
    kamailio.process = subprocess.Popen(
        command,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "kamailio.log").open("w"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if kamailio.process.poll() is not None:
            pytest.fail(f"kamailio stopped:\n{kamailio.log()}")
        if _answers_options(port):
            return kamailio
    stop_kamailio(kamailio)
    pytest.fail(f"kamailio did not answer:\n{kamailio.log()}")


def stop_kamailio(kamailio: Kamailio) -> None:
    if kamailio.process is not None:
        _stop(kamailio.process, group=True)
        kamailio.process = None


def _answers_options(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        local = s.getsockname()[1]
        s.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-probe{time.monotonic_ns()}\r\n"
                f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        try:
            return s.recv(4096).startswith(b"SIP/2.0 200")
        except OSError:
            return False


@pytest.fixture(scope="package")
def kamailio(
    tmp_path_factory: pytest.TempPathFactory, commcredits: Commcredits, carrier: int
) -> Iterator[Kamailio]:
    started = start_kamailio(tmp_path_factory.mktemp("kamailio"), commcredits, carrier)
    yield started
    stop_kamailio(started)


@dataclass
class Run:
    """One batch of calls SIPp is placing."""

    process: subprocess.Popen[str]
    folder: Path
    timeout: float

    def wait(self) -> subprocess.CompletedProcess[str]:
        """Wait for every call of the batch to finish; SIPp's exit status says whether all
        went as the scenario expects (0)."""
        stdout, stderr = self.process.communicate(timeout=self.timeout + 30)
        return subprocess.CompletedProcess(
            self.process.args, self.process.returncode, stdout, stderr
        )

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")))


@dataclass
class Phones:
    """SIPp as the phones: a batch of calls through Kamailio, one row of numbers a call."""

    kamailio: Kamailio
    folder: Path
    runs: list[Run] = field(default_factory=list)

    def start(
        self,
        calls: list[tuple[str, str]],
        *,
        hangup_after_ms: int = 30_000,
        refused_with: int | None = None,
        concurrent: int = 1,
        rate: int = 10,
        timeout: float = 120,
    ) -> Run:
        """Start placing ``calls`` ((from, to) pairs) in the background; each hangs up after
        ``hangup_after_ms`` unless the network sends BYE first, or, with ``refused_with``,
        expects that final answer."""
        run = self.folder / f"run{len(self.runs) + 1}"
        run.mkdir()
        if refused_with is None:
            scenario = (SCENARIOS / "uac_call.xml").read_text()
            scenario = scenario.replace("{hangup_ms}", str(hangup_after_ms))
        else:
            scenario = (SCENARIOS / "uac_refused.xml").read_text()
            scenario = scenario.replace("{code}", str(refused_with))
        (run / "uac.xml").write_text(scenario)
        rows = "".join(f"{a};{b};\n" for a, b in calls)
        (run / "calls.csv").write_text("SEQUENTIAL\n" + rows)
        command = ["sipp", f"127.0.0.1:{self.kamailio.port}", "-sf", "uac.xml"]
        command += ["-inf", "calls.csv", "-m", str(len(calls)), "-l", str(concurrent)]
        command += ["-r", str(rate), "-i", "127.0.0.1", "-p", str(free_udp_port())]
        command += ["-nostdin", "-nd", "-trace_err", "-trace_logs", "-trace_msg", "-timeout_error"]
        command += ["-timeout", f"{int(timeout)}s", "-max_recv_loops", "1000"]
        process = subprocess.Popen(
            command,
            cwd=run,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = Run(process, run, timeout)
        self.runs.append(started)
        return started

    def call(
        self,
        calls: list[tuple[str, str]],
        *,
        hangup_after_ms: int = 30_000,
        refused_with: int | None = None,
        concurrent: int = 1,
        rate: int = 10,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Place ``calls`` and wait for all of them to finish (see :meth:`start`)."""
        return self.start(
            calls,
            hangup_after_ms=hangup_after_ms,
            refused_with=refused_with,
            concurrent=concurrent,
            rate=rate,
            timeout=timeout,
        ).wait()

    def logs(self) -> str:
        """The SIPp logs of the latest batch."""
        return self.runs[-1].logs() if self.runs else ""

    def stop(self) -> None:
        """Stop every SIPp this object started that is still running."""
        for run in self.runs:
            _stop(run.process)


@pytest.fixture
def phones(kamailio: Kamailio, tmp_path: Path) -> Iterator[Phones]:
    started = Phones(kamailio, tmp_path)
    yield started
    started.stop()


@dataclass
class Org:
    """An organization on the running server, with one calling user and its number."""

    id: str
    number: str
    api: httpx.Client

    def balance(self) -> str:
        body: dict[str, Any] = self.api.get(f"/v1/orgs/{self.id}/credits").json()
        return str(body["balance"])

    def calls(self) -> list[dict[str, Any]]:
        """The PSTN usage report's rows (R-50), keyed by column name."""
        rows: list[dict[str, Any]] = self.api.get(
            f"/v1/orgs/{self.id}/reports/pstn", params={"days": 7, "format": "json"}
        ).json()["rows"]
        return rows


@pytest.fixture
def operator(commcredits: Commcredits) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=commcredits.url,
        headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
        timeout=30,
    ) as client:
        yield client


def new_org(api: httpx.Client, balance: str, users: int = 1) -> list[Org]:
    """A prepaid US organization funded with 50.00 and then adjusted down to ``balance``,
    and ``users`` users on Teams Phone + a domestic plan + credits, one number each."""

    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    org = ok(
        api.post(
            "/v1/orgs",
            json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
        )
    )["id"]
    method = ok(
        api.post(
            f"/v1/orgs/{org}/payment-methods",
            json={"type": "enterprise_agreement", "agreement_number": "EA-1"},
        )
    )["id"]
    ok(
        api.post(
            f"/v1/orgs/{org}/credits/orders", json={"amount": "50.00", "payment_method": method}
        )
    )
    if balance != "50.00":
        ok(
            api.post(
                f"/v1/orgs/{org}/credits/adjustments",
                json={"amount": str(Decimal(balance) - Decimal("50.00")), "reason": "test"},
            )
        )
    for sku in ("MCOEV", "MCOPSTN1"):
        ok(api.post(f"/v1/orgs/{org}/subscriptions", json={"sku": sku, "quantity": users}))
    orgs = []
    for _ in range(users):
        n = next(_NUMBERS)
        upn = f"user{n}@contoso.com"
        number = f"+1425555{n:04d}"
        ok(
            api.post(
                f"/v1/orgs/{org}/users",
                json={"upn": upn, "display_name": f"User {n}", "usage_location": "US"},
            )
        )
        ok(
            api.post(
                f"/v1/orgs/{org}/users/{upn}/licenses",
                json={"add": ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], "remove": []},
            )
        )
        ok(
            api.post(
                f"/v1/orgs/{org}/numbers",
                json={"number": number, "kind": "user", "assigned_to": upn},
            )
        )
        orgs.append(Org(org, number, api))
    return orgs

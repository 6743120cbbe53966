"""SIP call set-ups per second through Kamailio with commcredits deciding every call.

Real processes on loopback: ``commcredits serve --workers 2`` on SQLite, Kamailio with the
shipped ``integrations/kamailio/kamailio.cfg``, SIPp (Debian package ``sip-tester``) as the
carrier (answers every call) and as the phones (place calls at a fixed rate, each hung up after
one second). Every call costs commcredits two requests: ``POST /v1/calls`` on the INVITE and
``POST /v1/calls/{call_id}/end`` on the BYE. Kamailio's SIP workers never wait for commcredits:
its ``ASK_WORKERS`` processes send the requests, at most that many at once.

Figures, each beside a baseline measured in the same run under the same load: the same Kamailio
configuration started with ``-A RELAY_WITHOUT_CREDIT_CHECK``, which relays every call without
asking (a define for benchmarks only).

* successful call set-ups per second: calls answered and hung up as the phone expected, divided
  by the time the phones took to place them (the run's wall time less one call's length);
* failed calls, and of those the ones commcredits caused: refused because commcredits did not
  answer in time (``X-Commcredits-Reason: commcredits_unreachable``) or denied;
* set-up time (INVITE to 200 OK) at the 99th percentile, from SIPp's per-call trace;
* money afterwards: no call left active in commcredits (every call the proxy authorized was
  ended, the proxy sending an end again until it is taken), the balance never below zero,
  ``ledger verify`` clean.

Everything shares the machine's cores, the load generator included, so the rate is that of the
whole set-up on this machine. Without ``kamailio`` and ``sipp`` on the PATH the suite says so and
reports nothing (``scripts/install-system-deps --sip``).

For sizing runs, environment variables change the set-up (the defaults are the figures'):
``BENCH_SIP_RATE`` (calls offered per second), ``BENCH_SIP_SERVE_WORKERS`` (commcredits'
``--workers``), ``BENCH_SIP_WORKERS`` and ``BENCH_SIP_ASK_WORKERS`` (Kamailio's SIP workers and
processes asking commcredits), and ``BENCH_SIP_KEEP`` (a folder that keeps every log and the
database of the run instead of a temporary one).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure
from commcredits.app import build
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "integrations" / "kamailio" / "kamailio.cfg"
SCENARIOS = ROOT / "tests" / "sip" / "scenarios"
TARGET_RATE = 500
HOLD_MS = 1_000
SECONDS = 10
"""How long each load is offered: ten seconds of calls at the rate (5,000 calls at 500/s)."""
USERS = 200
SERVE_WORKERS = 2
"""``commcredits serve --workers``: one per core. More only share the same two cores with
Kamailio and SIPp (measured here: 3 workers set up no more calls per second than 2)."""
KAMAILIO_WORKERS = 8
"""Kamailio's SIP workers: they never wait for commcredits, a few per core are plenty."""
ASK_WORKERS = 192
"""Kamailio's processes asking commcredits, one request each at a time, so the most requests
in flight: the shipped configuration's default. commcredits answers in batches, and more in
flight make larger batches: alternating runs here, before new calls could wait for a free
process, answered 4,243 to 4,499 of 5,000 calls with 32, 4,891 to 4,903 with 64, 4,967 to 5,000
with 128, and all 5,000 in 7 of 9 runs with 192 or 256."""
RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,currency,"
    "effective_from,effective_to,description\n"
    "outbound,,GB,any,0.6000,,1,1,USD,2020-01-01,,bench per second\n"
)
LONDON = "+442071234567"


@dataclass(frozen=True)
class Load:
    offered: int
    successful: int
    refused_by_commcredits: Counter[str]
    """Calls the phones saw refused with an X-Commcredits-Reason, by reason."""
    placing_seconds: float
    setup_ms: list[float]

    @property
    def failed(self) -> int:
        return self.offered - self.successful

    @property
    def rate(self) -> float:
        return self.successful / self.placing_seconds

    def setup_p99(self) -> float:
        if len(self.setup_ms) < 2:
            return self.setup_ms[0] if self.setup_ms else 0.0
        return statistics.quantiles(self.setup_ms, n=100, method="inclusive")[98]


@dataclass(frozen=True)
class ProxyLog:
    """What the proxy logged: calls refused because commcredits did not answer (``busy``: of
    those, refused because every process asking commcredits stayed busy for as long as a new
    call may wait, ``ASK_WAIT_MS``), calls denied,
    end reports that had to be sent again."""

    not_decided: int
    busy: int
    denied: int
    ends_retried: int


@dataclass(frozen=True)
class Money:
    ended: int
    active: int
    problems: int
    """A balance, or what is left after reservations, below zero; ``ledger verify`` findings."""


def _setting(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(folder: Path) -> tuple[str, str, str, list[str]]:
    """A migrated SQLite database: one funded organization whose users each have a number,
    per-second rates to the United Kingdom, and a platform telephony key."""
    url = f"sqlite:///{folder / 'commcredits.db'}"
    container = build(
        Settings(database_url=url, sandbox_journal=None, mail_spool_dir=folder / "mail")
    )
    numbers = []
    try:
        container.rating.load(RATES, "bench")
        org = container.orgs.create(NewOrganization("Bench", "US", "USD", "prepaid")).id
        method = container.credits.add_agreement(org, "EA-BENCH")
        container.credits.place_order(org, NewOrder("1000000", method.id))
        for sku in ("MCOEV", "MCOPSTN1"):
            container.directory.set_subscription(org, sku, USERS, actor="bench")
        for n in range(USERS):
            upn = f"u{n}@bench.example"
            number = f"+1425555{n + 1000:04d}"
            container.directory.create_user(org, upn, f"User {n}", "US", actor="bench")
            container.directory.change_licenses(
                org, upn, ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="bench"
            )
            container.directory.add_number(org, number, "user", upn, actor="bench")
            numbers.append(number)
        key = container.keys.create_platform_telephony_key("bench").secret
    finally:
        container.close()
    return url, org, key, numbers


def _stop(process: subprocess.Popen[Any], *, group: bool = False) -> None:
    if process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=20)


@contextmanager
def _served(folder: Path, url: str) -> Iterator[str]:
    """``commcredits serve --workers SERVE_WORKERS`` in ``folder``, until the block ends."""
    port = _free_port(socket.SOCK_STREAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMCREDITS_")}
    env.update(COMMCREDITS_CONFIG=str(folder / "none.toml"), COMMCREDITS_LOG_LEVEL="WARNING")
    command = [sys.executable, "-m", "commcredits.cli", "serve", "--database-url", url]
    workers = _setting("BENCH_SIP_SERVE_WORKERS", SERVE_WORKERS)
    command += ["--port", str(port), "--workers", str(workers)]
    with (folder / "serve.log").open("w") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start; see {folder / 'serve.log'}")
                try:
                    if all(
                        httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200
                        for _ in range(8)
                    ):
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield base
        finally:
            _stop(process)


@contextmanager
def _process(command: list[str], folder: Path, name: str, *, group: bool = False) -> Iterator[None]:
    with (folder / f"{name}.log").open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=group,
        )
        try:
            time.sleep(1.0)
            if process.poll() is not None:
                raise RuntimeError(f"{name} stopped; see {folder / f'{name}.log'}")
            yield
        finally:
            _stop(process, group=group)


@contextmanager
def _carrier(folder: Path) -> Iterator[int]:
    """SIPp answering every call, as the carrier gateway."""
    port = _free_port(socket.SOCK_DGRAM)
    command = ["sipp", "-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(port)]
    command += ["-nostdin", "-nd"]
    with _process(command, folder, "carrier"):
        yield port


@contextmanager
def _kamailio(folder: Path, url: str, key: str, carrier: int, *, ask: bool) -> Iterator[int]:
    """Kamailio with the shipped configuration; with ``ask`` false it relays without asking."""
    port = _free_port(socket.SOCK_DGRAM)
    defines = {
        "COMMCREDITS_URL": f'"{url}"',
        "COMMCREDITS_KEY": f'"{key}"',
        "CARRIER_GATEWAY": f'"sip:127.0.0.1:{carrier}"',
        "LISTEN_ADDRESS": f"udp:127.0.0.1:{port}",
        "WORKERS": str(_setting("BENCH_SIP_WORKERS", KAMAILIO_WORKERS)),
        "ASK_WORKERS": str(_setting("BENCH_SIP_ASK_WORKERS", ASK_WORKERS)),
    }
    command = ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-m", "256", "-M", "16"]
    command += ["-Y", str(folder), "-P", str(folder / "kamailio.pid"), "-w", str(folder)]
    for name, value in defines.items():
        command += ["-A", f"{name}={value}"]
    if not ask:
        command += ["-A", "RELAY_WITHOUT_CREDIT_CHECK"]
    with _process(command, folder, "kamailio", group=True):
        yield port


def _phones(folder: Path, kamailio: int, numbers: list[str], rate: int, calls: int) -> Load:
    """SIPp placing ``calls`` calls at ``rate`` a second, each hung up after ``HOLD_MS``."""
    folder.mkdir()
    scenario = (SCENARIOS / "uac_call.xml").read_text().replace("{hangup_ms}", str(HOLD_MS))
    (folder / "uac.xml").write_text(scenario)
    (folder / "calls.csv").write_text(
        "SEQUENTIAL\n" + "".join(f"{number};{LONDON};\n" for number in numbers)
    )
    command = ["sipp", f"127.0.0.1:{kamailio}", "-sf", "uac.xml", "-inf", "calls.csv"]
    command += ["-m", str(calls), "-r", str(rate), "-l", str(rate * 10)]
    command += ["-i", "127.0.0.1", "-p", str(_free_port(socket.SOCK_DGRAM))]
    command += ["-nostdin", "-nd", "-trace_err", "-trace_rtt", "-rtt_freq", "1"]
    command += ["-trace_stat", "-fd", "3600", "-timeout", f"{calls // rate + 60}s"]
    started = time.monotonic()
    subprocess.run(
        command,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=calls // rate + 120,
        check=False,
    )
    wall = time.monotonic() - started
    # The statistics file: a header line, then one line per dump, the last at the end.
    (stats,) = folder.glob("uac_*_.csv")
    lines = stats.read_text().splitlines()
    counters = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    errors = "".join(p.read_text(errors="replace") for p in folder.glob("uac_*_errors.log"))
    setup_ms = []
    for path in folder.glob("uac_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:  # Date_ms;response_time_ms;rtd_no
            fields = line.split(";")
            if len(fields) >= 2 and fields[1].strip():
                setup_ms.append(float(fields[1]))
    return Load(
        offered=calls,
        successful=int(counters["SuccessfulCall(C)"]),
        # The phone's scenario writes one line per refused call (tests/sip/scenarios).
        refused_by_commcredits=Counter(
            re.findall(r"refused: X-Commcredits-Reason: ([a-z_]+)", errors)
        ),
        placing_seconds=max(wall - HOLD_MS / 1000 - 0.5, 0.001),
        setup_ms=setup_ms,
    )


def _proxy_log(folder: Path) -> ProxyLog:
    log = (folder / "kamailio.log").read_text(errors="replace")
    return ProxyLog(
        not_decided=len(re.findall(r"commcredits: call \S+ not decided", log)),
        busy=len(re.findall(r"commcredits: call \S+ not decided \(every process", log)),
        denied=len(re.findall(r"commcredits: call \S+ denied", log)),
        ends_retried=log.count("not reported yet"),
    )


def _money(url: str, org: str, wait: float) -> Money:
    """The calls in commcredits once none is active or ``wait`` seconds have passed, and the
    money problems."""
    path = url.removeprefix("sqlite:///")
    deadline = time.monotonic() + wait
    while True:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            query = "SELECT status, COUNT(*) FROM calls GROUP BY status"
            counts = {str(status): int(n) for status, n in db.execute(query).fetchall()}
        if counts.get("active", 0) == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    container = build(Settings(database_url=url, sandbox_journal=None), upgrade=False)
    try:
        account = container.credits.view(org).account
        problems, _ = verify_ledger(container.store, org)
    finally:
        container.close()
    overdrawn = int(account.balance < 0 or account.balance - account.reserved < 0)
    return Money(counts.get("ended", 0), counts.get("active", 0), overdrawn + len(problems))


def _through_proxy(
    folder: Path,
    base: str,
    key: str,
    numbers: list[str],
    *,
    rate: int,
    calls: int,
    ask: tuple[str, str] | None,
) -> tuple[Load, ProxyLog, Money | None]:
    """The load through a proxy that asks commcredits (``ask`` = its database URL and the
    organization) or relays without asking (None). The money is read while the proxy still
    runs, so the end reports it sends again are taken."""
    folder.mkdir()
    with (
        _carrier(folder) as carrier,
        _kamailio(folder, base, key, carrier, ask=ask is not None) as proxy,
    ):
        warm = min(rate, 100)
        _phones(folder / "warm-up", proxy, numbers, warm, warm)
        load = _phones(folder / "run", proxy, numbers, rate, calls)
        money = None if ask is None else _money(*ask, wait=30)
    return load, _proxy_log(folder), money


def _caused(load: Load, proxy: ProxyLog) -> int:
    """Failed calls the proxy refused for commcredits: not decided, or denied."""
    return max(sum(load.refused_by_commcredits.values()), proxy.not_decided + proxy.denied)


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    if shutil.which("kamailio") is None or shutil.which("sipp") is None:
        say(
            "  kamailio and sipp are not installed (scripts/install-system-deps --sip):"
            " the sip suite is skipped"
        )
        return []
    rate = _setting("BENCH_SIP_RATE", TARGET_RATE)
    calls = rate * (4 if quick else SECONDS)
    keep = os.environ.get("BENCH_SIP_KEEP", "").strip()
    if keep:
        shutil.rmtree(keep, ignore_errors=True)
        Path(keep).mkdir(parents=True)
    with tempfile.TemporaryDirectory() if not keep else nullcontext(keep) as tmp:
        folder = Path(tmp)
        url, org, key, numbers = _prepare(folder)
        with _served(folder, url) as base:
            say(f"  {calls:,} calls offered at {rate}/s, {HOLD_MS} ms each, commcredits deciding")
            asking, proxy, money = _through_proxy(
                folder / "asking", base, key, numbers, rate=rate, calls=calls, ask=(url, org)
            )
            say("  the same load relayed without asking")
            relaying, _, _ = _through_proxy(
                folder / "relaying", base, key, numbers, rate=rate, calls=calls, ask=None
            )
            caused = _caused(asking, proxy)
            lower: tuple[int, Load, ProxyLog, Money | None] | None = None
            if caused:
                # What commcredits sustains: the rate it decided, less a fifth for the bursts.
                rate_below = max(10, int(asking.rate * 0.8) // 10 * 10)
                calls_below = rate_below * (4 if quick else SECONDS)
                say(f"  {calls_below:,} calls offered at {rate_below}/s, commcredits deciding")
                lower = (
                    rate_below,
                    *_through_proxy(
                        folder / "asking-lower",
                        base,
                        key,
                        numbers,
                        rate=rate_below,
                        calls=calls_below,
                        ask=(url, org),
                    ),
                )
    assert money is not None
    say(
        f"  asking: {asking.successful:,} answered, {asking.failed:,} failed, {caused:,} of them"
        f" refused by the proxy for commcredits ({proxy.not_decided:,} undecided, of them"
        f" {proxy.busy:,} with every process asking commcredits busy,"
        f" {proxy.denied:,} denied); {proxy.ends_retried:,} end reports sent again;"
        f" relaying: {relaying.successful:,} answered, {relaying.failed:,} failed"
    )
    say(
        f"  set-up time p99: {asking.setup_p99():.0f} ms asking,"
        f" {relaying.setup_p99():.0f} ms relaying"
    )
    say(
        f"  commcredits afterwards: {money.ended:,} calls ended, {money.active:,} still active,"
        f" {money.problems} money problems; Kamailio, SIPp and commcredits share the machine's"
        f" {os.cpu_count()} cores"
    )
    figures = []
    if lower is not None:
        rate_below, below, below_proxy, below_money = lower
        assert below_money is not None
        below_caused = _caused(below, below_proxy)
        say(
            f"  at {rate_below}/s: {below.successful:,} answered, {below.failed:,} failed,"
            f" {below_caused:,} of them refused for commcredits; set-up time p99"
            f" {below.setup_p99():.0f} ms; afterwards {below_money.active:,} calls still active,"
            f" {below_money.problems} money problems"
        )
        figures.append(
            Figure(
                f"SIP call set-ups/s through Kamailio, commcredits deciding ({rate_below}/s"
                " offered, below what it decided at the target)",
                below.rate,
                "calls/s",
                None,
                "no failed call caused by commcredits, no call left active",
                below_caused == 0 and below_money.active + below_money.problems == 0,
            )
        )
    return [
        Figure(
            f"SIP call set-ups/s through Kamailio, commcredits deciding ({rate}/s offered)",
            asking.rate,
            "calls/s",
            relaying.rate,
            f">= {TARGET_RATE}/s, no failed call caused by commcredits",
            asking.rate >= TARGET_RATE * 0.98 and caused == 0,
        ),
        Figure("SIP failed calls caused by commcredits", caused, "calls", None, "0", caused == 0),
        Figure(
            "SIP failed calls, all causes (commcredits deciding)",
            asking.failed,
            "calls",
            relaying.failed or None,
            "(reported)",
            None,
        ),
        Figure(
            "SIP set-up time p99 (INVITE to 200 OK), commcredits deciding",
            asking.setup_p99(),
            "ms",
            relaying.setup_p99() or None,
            "(reported)",
            None,
        ),
        Figure(
            "SIP calls left active in commcredits, money problems",
            money.active + money.problems,
            "calls",
            None,
            "0",
            money.active + money.problems == 0,
        ),
        *figures,
    ]

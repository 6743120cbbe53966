"""Call control over HTTP: a real ``commcredits serve --workers 2`` on SQLite, 64 clients.

Figures, each beside a baseline measured in the same run:

* call-control requests per second (authorize and end pairs, one organization, an organization
  telephony key, 64 keep-alive connections); baseline: a no-op endpoint of the same app
  (``GET /v1/_noop``, same server, same workers, same middleware) under the same load.
* p50 and p99 latency of those requests.
* money afterwards: the account's balance minus its reservations never below zero, and
  ``ledger verify`` clean.

The load comes from ``wrk`` (Debian package ``wrk``) with a Lua script: each connection
authorizes a call and then ends it. It runs on the same cores as the server, so every figure
here is the server and the generator together; the generator's own cost is reported as requests
per CPU-second of ``wrk`` (from its resource usage), so one can tell whether it was the limit,
and so is the server's CPU time per request (from /proc), which a busy machine disturbs less
than requests per second. Without ``wrk`` on the PATH the suite says so and reports nothing.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure
from commcredits.app import build
from commcredits.services.credits import NewOrder
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings

CONNECTIONS = 64
WORKERS = 2
USERS = 50
RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,currency,"
    "effective_from,effective_to,description\n"
    "outbound,44,,,0.0100,,60,60,USD,,,bench\n"
)

# Each wrk thread keeps the calls it authorized; the next request it sends ends one of them,
# else authorizes a new call. A connection therefore alternates authorize and end.
CALLS_SCRIPT = """
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  base = args[1]
  users = tonumber(args[2])
  prefix = args[3] .. "-" .. tid .. "-"
  n = 0
  authorized = {}
  bad = 0
  allowed = 0
  denied = 0
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. KEY}
end

function request()
  local id = table.remove(authorized)
  if id then
    return wrk.format("POST", base .. "/calls/" .. id .. "/end", headers,
      '{"duration_seconds":61}')
  end
  n = n + 1
  local user = "u" .. (n % users) .. "@bench.example"
  local body = '{"call_id":"' .. prefix .. n .. '","call_type":"user_out","user":"' .. user
    .. '","from":"+14255550100","to":"+442071234567"}'
  return wrk.format("POST", base .. "/calls", headers, body)
end

function response(status, hdrs, body)
  if status == 201 then
    local id = body:match('"call_id":"([^"]+)"')
    if body:find('"decision":"allow"', 1, true) then
      allowed = allowed + 1
      table.insert(authorized, id)
    else
      denied = denied + 1
    end
  elseif status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total, allowed_total, denied_total = 0, 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    allowed_total = allowed_total + t:get("allowed")
    denied_total = denied_total + t:get("denied")
  end
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%f,"p50_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"errors":%d,"bad_status":%d,"allowed":%d,"denied":%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, bad_total, allowed_total, denied_total))
end
"""

NOOP_SCRIPT = """
function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%d,"seconds":%f,"p50_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"errors":%d,"bad_status":%d,"allowed":0,"denied":0}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status))
end
"""


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    errors: int
    allowed: int
    denied: int
    generator_cpu: float
    """CPU seconds ``wrk`` itself used."""
    server_cpu: float
    """CPU seconds the server's processes used meanwhile."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def server_cpu_us(self) -> float:
        """Server CPU per request, in microseconds: the cost that does not depend on load."""
        return self.server_cpu * 1e6 / self.requests if self.requests else 0.0

    @property
    def generator_capacity(self) -> float:
        """Requests per CPU-second of the generator: what it could drive on a core alone."""
        return self.requests / self.generator_cpu if self.generator_cpu else 0.0


def _prepare(folder: Path) -> tuple[str, str, str]:
    """A migrated SQLite database with a funded organization, its users, rates and a key."""
    url = f"sqlite:///{folder / 'commcredits.db'}"
    container = build(
        Settings(database_url=url, sandbox_journal=None, mail_spool_dir=folder / "mail")
    )
    try:
        container.rating.load(RATES, "bench")
        org = container.orgs.create(NewOrganization("Bench", "US", "USD", "prepaid")).id
        method = container.credits.add_agreement(org, "EA-BENCH")
        container.credits.place_order(org, NewOrder("1000000", method.id))
        for sku in ("MCOEV", "MCOPSTN1"):
            container.directory.set_subscription(org, sku, USERS, actor="bench")
        for n in range(USERS):
            upn = f"u{n}@bench.example"
            container.directory.create_user(org, upn, f"User {n}", "US", actor="bench")
            container.directory.change_licenses(
                org, upn, ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="bench"
            )
        key = container.keys.create_org_key(org, "bench", "telephony").secret
    finally:
        container.close()
    return url, org, key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _served(folder: Path, url: str, port: int) -> Iterator[tuple[str, int]]:
    """``commcredits serve --workers 2`` in ``folder``, until the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMCREDITS_")}
    env["COMMCREDITS_CONFIG"] = str(folder / "none.toml")
    command = [sys.executable, "-m", "commcredits.cli", "serve", "--database-url", url]
    command += ["--port", str(port), "--workers", str(WORKERS)]
    with (folder / "serve.log").open("w") as log:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start; see {folder / 'serve.log'}")
                try:
                    # Both workers answer once a few requests in a row succeed.
                    if all(
                        httpx.get(f"{base}/v1/_noop", timeout=0.5).status_code == 204
                        for _ in range(8)
                    ):
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield base, process.pid
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its children that are still running."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime and stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _wrk(folder: Path, server: int, url: str, script: str, seconds: float, *args: str) -> Load:
    path = folder / "load.lua"
    path.write_text(script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_seconds(server)
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "--timeout", "5s"]
    result = subprocess.run(
        [*command, "-s", str(path), url, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _cpu_seconds(server) - server_before
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    found: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return Load(
        requests=found["requests"],
        seconds=found["seconds"],
        p50_us=found["p50_us"],
        p99_us=found["p99_us"],
        errors=found["errors"] + found["bad_status"],
        allowed=found["allowed"],
        denied=found["denied"],
        generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        server_cpu=server_cpu,
    )


def _money(url: str, org: str) -> tuple[Decimal, Decimal, int]:
    """The account's balance and reservations as stored, and how many ledger problems."""
    container = build(Settings(database_url=url, sandbox_journal=None), upgrade=False)
    try:
        view = container.credits.view(org)
        problems, _ = verify_ledger(container.store, org)
        return view.account.balance, view.account.reserved, len(problems)
    finally:
        container.close()


def run(*, quick: bool, say: Callable[..., Any]) -> list[Figure]:
    if shutil.which("wrk") is None:
        say("  wrk is not installed (apt-get install wrk): the http suite is skipped")
        return []
    seconds = 4.0 if quick else 15.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url, org, key = _prepare(folder)
        calls_script = f'KEY = "{key}"\n' + CALLS_SCRIPT
        with _served(folder, url, _free_port()) as (base, pid):
            org_base = f"{base}/v1/orgs/{org}"
            say(f"  warm-up, then {seconds:.0f} s of authorize+end from {CONNECTIONS} clients")
            _wrk(folder, pid, org_base, calls_script, 2, org_base, str(USERS), "warm")
            calls = _wrk(folder, pid, org_base, calls_script, seconds, org_base, str(USERS), "run")
            say(f"  {seconds:.0f} s of GET /v1/_noop from {CONNECTIONS} clients")
            noop = _wrk(folder, pid, f"{base}/v1/_noop", NOOP_SCRIPT, seconds)
        balance, reserved, problems = _money(url, org)
    say(
        f"  calls: {calls.requests:,} requests ({calls.allowed:,} allowed, {calls.denied:,}"
        f" denied, {calls.errors} errors); no-op: {noop.requests:,} requests, {noop.errors} errors"
    )
    say(
        f"  generator (wrk) capacity: {calls.generator_capacity:,.0f} call requests and"
        f" {noop.generator_capacity:,.0f} no-op requests per CPU-second; it shares the"
        f" machine's {os.cpu_count()} cores with the server"
    )
    say(
        f"  server CPU per request: {calls.server_cpu_us:,.0f} µs for call control,"
        f" {noop.server_cpu_us:,.0f} µs for the no-op (steadier than req/s on a busy machine)"
    )
    say(f"  afterwards: balance {balance}, reserved {reserved}, ledger problems {problems}")
    overdrawn = int(balance < 0 or balance - reserved < 0)
    ok = calls.errors == 0
    return [
        Figure(
            "HTTP call control req/s (2 workers, 64 clients, one org)",
            calls.rate,
            "req/s",
            noop.rate,
            ">= 5,000/s and >= 0.5x no-op endpoint, no errors",
            ok and calls.rate >= 5_000 and calls.rate / noop.rate >= 0.5,
        ),
        Figure(
            "HTTP call control p50 latency",
            calls.p50_us,
            "µs",
            noop.p50_us,
            "(reported)",
            None,
        ),
        Figure(
            "HTTP call control p99 latency",
            calls.p99_us,
            "µs",
            noop.p99_us,
            "< 20 ms",
            calls.p99_us < 20_000,
        ),
        Figure(
            "HTTP money problems after the run (overdraft, ledger verify)",
            overdrawn + problems,
            "problems",
            None,
            "0",
            overdrawn + problems == 0,
        ),
    ]

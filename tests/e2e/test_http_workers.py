"""``commcredits serve --workers 2``: two processes, one SQLite database, real HTTP.

The organizations here are made through the services on the database file before the server
starts; every request afterwards goes over a real socket to whichever worker takes it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from commcredits.app import Container, build
from commcredits.services.credits import NewOrder
from commcredits.services.keys import CACHE_SECONDS
from commcredits.services.orgs import NewOrganization
from commcredits.services.verify import verify_ledger
from commcredits.settings import Settings
from tests.support.postgres import free_port

Client = TestClient  # type: ignore[type-arg]

# One pound a minute to the UK, so a slice of 300 s reserves 5.00 and 50.00 covers ten calls.
RATES = (
    "service,prefix,country,number_type,rate,connection_fee,first_increment,increment,currency,"
    "effective_from,effective_to,description\n"
    "outbound,44,,,1.0000,,60,60,USD,,,test\n"
)
UK = "+442071234567"
CALLER = "+14255550100"


@dataclass(frozen=True)
class Served:
    base: str
    url: str
    operator: str
    output: Path


def _settings(url: str, folder: Path) -> Settings:
    return Settings(database_url=url, sandbox_journal=None, mail_spool_dir=folder / "mail")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`commcredits serve --workers 2` on a SQLite file, with an operator key made beforehand."""
    folder = tmp_path_factory.mktemp("workers")
    url = f"sqlite:///{folder / 'commcredits.db'}"
    container = build(_settings(url, folder))
    container.rating.load(RATES, "test rates")
    operator = container.keys.create_operator_key("test").secret
    container.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMCREDITS_")}
    env["COMMCREDITS_CONFIG"] = str(folder / "none.toml")
    env["COMMCREDITS_SANDBOX_JOURNAL"] = str(folder / "sandbox.jsonl")
    port = free_port()
    output = folder / "serve.log"
    command = [sys.executable, "-m", "commcredits.cli", "serve", "--workers", "2"]
    command += ["--port", str(port), "--database-url", url]
    with output.open("w") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while output.read_text().count("Application startup complete") < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"serve --workers 2 did not start:\n{output.read_text()}")
        time.sleep(0.2)
    yield Served(base, url, operator, output)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _funded_org(served: Served, folder: Path, users: int, deposit: str) -> tuple[str, str]:
    """An organization with ``deposit`` in credits, users on a Domestic Calling Plan with
    MCOPSTNPP (so calls abroad draw on credits), and an organization telephony key."""
    container: Container = build(_settings(served.url, folder), upgrade=False)
    try:
        org = container.orgs.create(NewOrganization("Contoso", "US", "USD", "prepaid")).id
        method = container.credits.add_agreement(org, "EA-1")
        container.credits.place_order(org, NewOrder(deposit, method.id))
        for sku in ("MCOEV", "MCOPSTN1"):
            container.directory.set_subscription(org, sku, users, actor="test")
        for n in range(users):
            upn = f"u{n}@contoso.example"
            container.directory.create_user(org, upn, f"User {n}", "US", actor="test")
            container.directory.change_licenses(
                org, upn, ["MCOEV", "MCOPSTN1", "MCOPSTNPP"], [], actor="test"
            )
        key = container.keys.create_org_key(org, "switch", "telephony").secret
    finally:
        container.close()
    return org, key


def test_serve_starts_the_workers_it_is_asked_for(served: Served) -> None:
    output = served.output.read_text()
    assert "workers: 2" in output
    assert len(set(re.findall(r"Started server process \[(\d+)\]", output))) == 2


def test_each_worker_sets_its_start_up_heap_aside_from_the_garbage_collector(
    served: Served,
) -> None:
    # Full collections walking the start-up heap stopped a worker for about 100 ms at a time
    # under load (docs/performance.md); a frozen heap is no longer walked.
    frozen = re.findall(
        r"start-up heap set aside from garbage collection: (\d+) objects",
        served.output.read_text(),
    )
    assert len(frozen) == 2
    assert all(int(count) > 10_000 for count in frozen)


def test_two_workers_authorize_concurrent_calls_without_errors_or_overdraft(
    served: Served, tmp_path: Path
) -> None:
    """R-28: 40 calls at once, through both workers, against credits for 10 reservations:
    each request answered, no more allowed than the money covers, never below zero."""
    org, key = _funded_org(served, tmp_path, users=8, deposit="50.00")
    headers = {"Authorization": f"Bearer {key}"}

    def call(n: int) -> httpx.Response:
        with httpx.Client(base_url=f"{served.base}/v1/orgs/{org}", headers=headers) as client:
            return client.post(
                "/calls",
                json={
                    "call_id": f"c{n}",
                    "call_type": "user_out",
                    "user": f"u{n % 8}@contoso.example",
                    "from": CALLER,
                    "to": UK,
                },
                timeout=30,
            )

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(40)))
    assert [a.status_code for a in answers] == [201] * 40, [a.text for a in answers]
    decisions = [a.json() for a in answers]
    allowed = [d["call_id"] for d in decisions if d["decision"] == "allow"]
    denied = {d["reason"] for d in decisions if d["decision"] == "deny"}
    assert 1 <= len(allowed) <= 10  # 5.00 reserved for each
    assert denied == {"no_credits"}
    with ThreadPoolExecutor(max_workers=10) as pool:
        ended = list(
            pool.map(
                lambda call_id: httpx.post(
                    f"{served.base}/v1/orgs/{org}/calls/{call_id}/end",
                    json={"duration_seconds": 61},
                    headers=headers,
                    timeout=30,
                ),
                allowed,
            )
        )
    assert [e.status_code for e in ended] == [200] * len(allowed)
    assert {e.json()["charge"] for e in ended} == {"2.00"}  # two started minutes at 1.00
    credits = httpx.get(
        f"{served.base}/v1/orgs/{org}/credits",
        headers={"Authorization": f"Bearer {served.operator}"},
    ).json()
    assert Decimal(credits["reserved"]) == 0
    assert Decimal(credits["balance"]) == Decimal("50.00") - 2 * len(allowed)
    container = build(_settings(served.url, tmp_path), upgrade=False)
    try:
        account = container.credits.view(org).account
        assert account.balance - account.reserved >= 0
        problems, _ = verify_ledger(container.store, org)
        assert [str(p) for p in problems] == []
    finally:
        container.close()


def test_a_revoked_key_stops_working_on_every_worker_within_the_cache_time(
    served: Served, tmp_path: Path
) -> None:
    """A key revoked through one worker is refused by all of them once CACHE_SECONDS passed
    (each worker remembers a verified key that long; the one that revoked it forgets at once)."""
    org, key = _funded_org(served, tmp_path, users=1, deposit="50.00")
    pools = f"{served.base}/v1/orgs/{org}/pools"
    as_key = {"Authorization": f"Bearer {key}"}
    # A new connection each time, so that both workers verify (and remember) the key.
    assert {httpx.get(pools, headers=as_key).status_code for _ in range(20)} == {200}
    key_id = key.removeprefix("cck_").split(".")[0]
    revoked = httpx.delete(
        f"{served.base}/v1/orgs/{org}/keys/{key_id}",
        headers={"Authorization": f"Bearer {served.operator}"},
    )
    assert revoked.status_code == 204
    time.sleep(CACHE_SECONDS + 0.5)
    after = [
        httpx.post(
            f"{served.base}/v1/orgs/{org}/calls",
            json={"call_id": f"after{n}", "call_type": "user_out"}
            | {"user": "u0@contoso.example", "from": CALLER, "to": UK},
            headers=as_key,
        )
        for n in range(20)
    ]
    assert {a.status_code for a in after} == {401}
    assert {a.json()["error"]["code"] for a in after} == {"invalid_api_key"}


def test_a_key_used_again_is_still_refused_at_once_after_revocation_in_the_same_process(
    client: Client,
) -> None:
    """The guard's fast path for a key it verified moments ago never outlives a revocation."""
    org = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
    ).json()["id"]
    issued = client.post(f"/v1/orgs/{org}/keys", json={"name": "k", "role": "reader"}).json()
    as_key = {"Authorization": f"Bearer {issued['key']}"}
    for _ in range(3):
        assert client.get(f"/v1/orgs/{org}", headers=as_key).status_code == 200
    assert client.delete(f"/v1/orgs/{org}/keys/{issued['id']}").status_code == 204
    refused = client.get(f"/v1/orgs/{org}", headers=as_key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"


def test_the_noop_endpoint_answers_nothing_to_anyone_and_is_not_documented(
    client: Client,
) -> None:
    answer = client.get("/v1/_noop", headers={"Authorization": ""})
    assert answer.status_code == 204
    assert answer.content == b""
    assert "/v1/_noop" not in client.get("/openapi.json").json()["paths"]


def test_the_access_log_names_the_key_by_id_and_never_logs_the_secret(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    org = client.post(
        "/v1/orgs",
        json={"name": "Contoso", "country": "US", "currency": "USD", "billing": "prepaid"},
    ).json()["id"]
    issued = client.post(f"/v1/orgs/{org}/keys", json={"name": "k", "role": "reader"}).json()
    with caplog.at_level(logging.INFO, logger="commcredits.access"):
        client.get(f"/v1/orgs/{org}", headers={"Authorization": f"Bearer {issued['key']}"})
    lines = [r.getMessage() for r in caplog.records if r.name == "commcredits.access"]
    assert lines, "no access log line"
    line = lines[-1]
    assert f'"path":"/v1/orgs/{org}"' in line
    assert '"status":200' in line
    assert f'"org":"{org}"' in line
    assert f'"key":"{issued["id"]}"' in line
    assert issued["key"].split(".", 1)[1] not in line

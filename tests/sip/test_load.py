"""Many calls at once through Kamailio: no SIP worker waits for commcredits, every answered
call is ended exactly once, a new call waits a short while for a process free to ask
commcredits and is refused when none frees in time, and emergency calls are relayed before
commcredits is asked."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sip.conftest import (
    Commcredits,
    Kamailio,
    Org,
    Phones,
    new_org,
    start_kamailio,
    stop_kamailio,
)

pytestmark = pytest.mark.sip

LONDON = "+442071234567"


def _rows_once_ended(org: Org, calls: int, within: float) -> list[dict[str, Any]]:
    """The organization's report rows once ``calls`` of them have an end time, or after
    ``within`` seconds (end reports are sent by the proxy's own processes, not the phone's)."""
    deadline = time.monotonic() + within
    while True:
        rows = org.calls()
        if sum(1 for row in rows if row["End Time"]) >= calls or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_every_answered_call_of_a_burst_is_ended_once_with_its_duration_and_charge(
    phones: Phones, operator: httpx.Client
) -> None:
    users = new_org(operator, "50.00", users=40)
    calls = [(user.number, LONDON) for user in users]
    done = phones.call(calls, hangup_after_ms=3_000, concurrent=40, rate=40)
    assert done.returncode == 0, done.stdout + phones.logs()

    rows = _rows_once_ended(users[0], 40, within=15)
    # One row per call: no call is missing, none is reported twice.
    assert len({row["Call ID"] for row in rows}) == len(rows) == 40
    assert all(row["End Time"] for row in rows), [r for r in rows if not r["End Time"]]
    # The phones hung up after 3 s: the proxy measured each call from its own 200 OK.
    assert all(2 <= row["Duration Seconds"] <= 4 for row in rows), [
        row["Duration Seconds"] for row in rows
    ]
    charged = sum(Decimal(row["Charge"]) for row in rows)
    assert all(
        Decimal(row["Charge"]) == Decimal(row["Duration Seconds"]) / 100 for row in rows
    )  # 0.60 a minute, per second
    assert Decimal(users[0].balance()) == Decimal("50.00") - charged


def test_an_emergency_call_is_relayed_and_reported_once_free_of_charge(
    phones: Phones, operator: httpx.Client
) -> None:
    (pat,) = new_org(operator, "0.00")  # no money: emergency calls do not need any
    done = phones.call([(pat.number, "911")], hangup_after_ms=2_000)
    assert done.returncode == 0, done.stdout + phones.logs()

    (row,) = _rows_once_ended(pat, 1, within=15)
    assert row["Call Type"] == "emergency_out"
    assert row["End Time"]
    assert 1 <= row["Duration Seconds"] <= 3
    assert row["Charge"] == "0.00"
    assert pat.balance() == "0.00"


@pytest.fixture
def silent_commcredits() -> Iterator[str]:
    """An address that takes connections and never answers: a commcredits that hangs."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def one_process_to_ask(
    tmp_path: Path, commcredits: Commcredits, carrier: int, silent_commcredits: str
) -> Iterator[Callable[..., Kamailio]]:
    """Kamailio with a single process to ask commcredits, pointed at one that hangs, with
    the settings given."""
    started: list[Kamailio] = []

    def start(**settings: str) -> Kamailio:
        folder = tmp_path / "kamailio-busy"
        folder.mkdir()
        kamailio = start_kamailio(
            folder,
            commcredits,
            carrier,
            ASK_WORKERS="1",
            COMMCREDITS_URL=f'"{silent_commcredits}"',
            **settings,
        )
        started.append(kamailio)
        return kamailio

    yield start
    for kamailio in started:
        stop_kamailio(kamailio)


def test_a_call_finding_every_process_busy_past_its_wait_is_refused_with_503_commcredits_busy(
    one_process_to_ask: Callable[..., Kamailio], tmp_path: Path
) -> None:
    kamailio = one_process_to_ask(COMMCREDITS_TIMEOUT="4", ASK_WAIT_MS="500")
    phones = Phones(kamailio, tmp_path / "phones")
    phones.folder.mkdir()
    try:
        # The first call takes the only process, which waits for commcredits until its timeout.
        first = phones.start([("+14255550100", LONDON)], refused_with=503, timeout=30)
        time.sleep(1.0)
        # The next one finds no process free, waits 500 ms for one and is refused busy, long
        # before the first call's question times out.
        busy = phones.start([("+14255550101", LONDON)], refused_with=503, timeout=30)
        done = busy.wait()
        assert done.returncode == 0, done.stdout + busy.logs()
        assert "reason=commcredits_busy" in busy.logs()
        assert first.process.poll() is None, "refused busy only once the first question timed out"
        done = first.wait()
        assert done.returncode == 0, done.stdout + first.logs()
        assert "reason=commcredits_unreachable" in first.logs()
    finally:
        phones.stop()
    assert "every process asking commcredits busy for 500 ms" in kamailio.log()


def test_a_call_finding_every_process_busy_waits_for_one_and_is_asked(
    one_process_to_ask: Callable[..., Kamailio], tmp_path: Path
) -> None:
    # Each question ends after 1 s (commcredits hangs). The process is free again after the
    # first call's question and the end report that follows it (0 s, in case commcredits did
    # authorize it), about 2 s in; the second call may wait 5 s.
    kamailio = one_process_to_ask(COMMCREDITS_TIMEOUT="1", ASK_WAIT_MS="5000")
    phones = Phones(kamailio, tmp_path / "phones")
    phones.folder.mkdir()
    try:
        first = phones.start([("+14255550100", LONDON)], refused_with=503, timeout=30)
        time.sleep(0.3)
        waiting = phones.start([("+14255550101", LONDON)], refused_with=503, timeout=30)
        for run in (first, waiting):
            done = run.wait()
            assert done.returncode == 0, done.stdout + run.logs()
        # Asked once the first call's question ended, not refused busy: its answer is the
        # one commcredits' silence gives.
        assert "reason=commcredits_unreachable" in waiting.logs()
        assert "reason=commcredits_busy" not in waiting.logs()
    finally:
        phones.stop()
    assert "waited for a process to ask commcredits" in kamailio.log()

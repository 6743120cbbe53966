"""When Kamailio cannot reach commcredits: new calls are refused (503, or 403 with the
"emergency" policy), emergency calls are relayed all the same (R-30), and the calls that were
in progress are settled once commcredits is back (their end is sent again until it is taken).

This module runs a commcredits of its own, so stopping it disturbs no other test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sip.conftest import (
    OPERATOR_KEY,
    Commcredits,
    Kamailio,
    Org,
    Phones,
    new_org,
    serving_commcredits,
    start_kamailio,
    stop_kamailio,
)

pytestmark = pytest.mark.sip

LONDON = "+442071234567"
EMERGENCY = "911"


@pytest.fixture(scope="module")
def own_commcredits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commcredits]:
    with serving_commcredits(tmp_path_factory.mktemp("commcredits-outage")) as server:
        yield server


@pytest.fixture
def own_operator(own_commcredits: Commcredits) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=own_commcredits.url,
        headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
        timeout=30,
    ) as client:
        yield client


def _kamailio(
    folder: Path, commcredits: Commcredits, carrier: int, **settings: str
) -> Iterator[Kamailio]:
    folder.mkdir()
    started = start_kamailio(folder, commcredits, carrier, **settings)
    yield started
    stop_kamailio(started)


@pytest.fixture
def refusing(tmp_path: Path, own_commcredits: Commcredits, carrier: int) -> Iterator[Kamailio]:
    """Kamailio with the default policy (UNREACHABLE_POLICY "refuse")."""
    yield from _kamailio(tmp_path / "kamailio", own_commcredits, carrier)


@pytest.fixture
def emergency_only(
    tmp_path: Path, own_commcredits: Commcredits, carrier: int
) -> Iterator[Kamailio]:
    """A second Kamailio, with UNREACHABLE_POLICY "emergency"."""
    yield from _kamailio(
        tmp_path / "kamailio-emergency",
        own_commcredits,
        carrier,
        UNREACHABLE_POLICY='"emergency"',
    )


def _phones(kamailio: Kamailio, folder: Path) -> Iterator[Phones]:
    folder.mkdir()
    started = Phones(kamailio, folder)
    yield started
    started.stop()


@pytest.fixture
def phones_refusing(refusing: Kamailio, tmp_path: Path) -> Iterator[Phones]:
    yield from _phones(refusing, tmp_path / "phones")


@pytest.fixture
def phones_emergency_only(emergency_only: Kamailio, tmp_path: Path) -> Iterator[Phones]:
    yield from _phones(emergency_only, tmp_path / "phones-emergency")


@pytest.fixture
def outage(own_commcredits: Commcredits) -> Iterator[Commcredits]:
    """The server, which the test stops; started again at teardown if the test did not."""
    yield own_commcredits
    if own_commcredits.process is None:
        own_commcredits.start()


def _ended_calls(org: Org, within: float) -> list[dict[str, Any]]:
    """The organization's ended calls, once at least one is there (waiting up to ``within``
    seconds: the proxy sends an end it could not deliver again every second)."""
    deadline = time.monotonic() + within
    while True:
        rows = [row for row in org.calls() if row["End Time"]]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_with_commcredits_down_new_calls_get_503_emergency_calls_go_through_and_calls_in_progress_are_settled_when_it_is_back(  # noqa: E501
    phones_refusing: Phones, own_operator: httpx.Client, outage: Commcredits, refusing: Kamailio
) -> None:
    phones = phones_refusing
    (talker,) = new_org(own_operator, "50.00")
    (short,) = new_org(own_operator, "0.07")  # 7 seconds at 0.01 a second
    (later,) = new_org(own_operator, "50.00")
    (caller_911,) = new_org(own_operator, "50.00")

    # Two calls in progress: one the phone hangs up after 6 s, one whose credit covers 7 s.
    talking = phones.start([(talker.number, LONDON)], hangup_after_ms=6_000)
    cut = phones.start([(short.number, LONDON)], hangup_after_ms=30_000)
    time.sleep(1.5)  # both answered
    outage.stop()

    refused = phones.start([(later.number, LONDON)], refused_with=503)
    done = refused.wait()
    assert done.returncode == 0, done.stdout + refused.logs()
    assert "reason=commcredits_unreachable" in refused.logs()

    emergency = phones.start([(caller_911.number, EMERGENCY)], hangup_after_ms=1_000)
    done = emergency.wait()
    assert done.returncode == 0, done.stdout + emergency.logs() + refusing.log()

    # Both calls end while commcredits is still down: the second one is cut at its granted
    # 7 s even though the next slice cannot be asked for.
    for run in (talking, cut):
        done = run.wait()
        assert done.returncode == 0, done.stdout + run.logs()
    assert outage.process is None
    assert "not reported yet" in refusing.log()

    outage.start()
    (talked,) = _ended_calls(talker, within=15)
    (was_cut,) = _ended_calls(short, within=15)

    # Durations are whole seconds between SIP messages; the dialog timer ticks once a second,
    # and a loaded machine (the suite runs beside everything else) delays a BYE by a second or
    # two. What matters is that the hang-up was seen and the cut call ended at its grant, long
    # before its phone's 30 s, and that each is charged for its recorded duration, capped by
    # what the credit covered.
    assert 5 <= talked["Duration Seconds"] <= 8
    assert Decimal(talked["Charge"]) == Decimal(talked["Duration Seconds"]) / 100
    assert Decimal(talker.balance()) == Decimal("50.00") - Decimal(talked["Charge"])

    assert 6 <= was_cut["Duration Seconds"] <= 10
    assert Decimal(was_cut["Charge"]) == min(
        Decimal(was_cut["Duration Seconds"]) / 100, Decimal("0.07")
    )
    assert Decimal(short.balance()) == Decimal("0.07") - Decimal(was_cut["Charge"])
    assert Decimal(short.balance()) >= 0

    # Sent again every second until taken, yet each call is charged once.
    time.sleep(2)
    assert len(talker.calls()) == 1
    assert len(short.calls()) == 1
    assert Decimal(talker.balance()) == Decimal("50.00") - Decimal(talked["Charge"])
    # The refused call was never charged.
    assert later.balance() == "50.00"
    assert later.calls() == []


def test_with_the_emergency_policy_ordinary_calls_get_403_and_only_emergency_calls_go_through(
    phones_emergency_only: Phones,
    own_operator: httpx.Client,
    outage: Commcredits,
    emergency_only: Kamailio,
) -> None:
    phones = phones_emergency_only
    (pat,) = new_org(own_operator, "50.00")
    outage.stop()

    refused = phones.start([(pat.number, LONDON)], refused_with=403)
    done = refused.wait()
    assert done.returncode == 0, done.stdout + refused.logs()
    assert "reason=commcredits_unreachable" in refused.logs()

    emergency = phones.start([(pat.number, EMERGENCY)], hangup_after_ms=1_000)
    done = emergency.wait()
    assert done.returncode == 0, done.stdout + emergency.logs() + emergency_only.log()

    outage.start()
    assert pat.balance() == "50.00"
    assert all(row["Charge"] == "0.00" for row in pat.calls())

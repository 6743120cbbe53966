"""The live-call writer: batches applied in memory and written together, on SQLite and
PostgreSQL. What a caller relies on: a refused request in a batch leaves the others alone, a
second process working on the same calls and balance is always seen (R-28: never an
overdraft, never a call charged twice), many callers share commits, and a caller with many
calls in flight (futures) is answered exactly as one waiting on each."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from commcredits.app import Container, build
from commcredits.domain.errors import CommcreditsError, NotFound
from commcredits.domain.usage import CallRecord
from commcredits.services.calls import CallRequest
from commcredits.services.calls_live import Authorize, End, Route, Usage
from commcredits.services.calls_model import UnknownNumber
from commcredits.services.group_commit import GroupCommitter, Outcome
from commcredits.store.database import UnitOfWork
from tests.conftest import CollectingTransport, assert_ledger_clean, make_settings
from tests.integration.test_calls_concurrency import _in_threads, _payg_org


def _call(call_id: str) -> CallRequest:
    return CallRequest(call_id, "user_out", "ann@contoso.com", "+12065550100", "+12065550199")


@pytest.fixture
def pair(
    database_url: str, tmp_path: Path, mail: CollectingTransport
) -> Iterator[tuple[Container, Container]]:
    """Two processes' worth of services on one database, with one-minute slices
    (2.50 a minute: each allowed call reserves 2.50)."""
    first = build(make_settings(database_url, tmp_path, call_slice_seconds=60), transport=mail)
    second = build(make_settings(database_url, tmp_path, call_slice_seconds=60), transport=mail)
    yield first, second
    assert_ledger_clean(first)
    second.close()
    first.close()


def test_one_batch_answers_each_request_and_a_refused_one_leaves_the_others_alone(
    pair: tuple[Container, Container],
) -> None:
    container, _ = pair
    org = _payg_org(container)
    live = container.calls.live
    with container.store.unit_of_work() as uow:
        outcomes = live.write(
            uow,
            container.clock.now(),
            [
                Authorize(org, _call("c1")),
                End(org, "no-such-call", 60),
                Authorize(org, _call("c1")),  # the same call id again, in the same batch
                Usage(org, "c1", 30),
                End(org, "c1", 90),
                Authorize("org_unknown", _call("c2")),
            ],
        )
        uow.commit()
    live.committed()
    (ok1, first), (ok2, missing), (ok3, repeat), (ok4, usage), (ok5, ended), (ok6, nobody) = (
        outcomes
    )
    assert (ok1, ok2, ok3, ok4, ok5, ok6) == (True, False, True, True, True, False)
    assert isinstance(missing, NotFound)
    assert missing.code == "call_not_found"
    assert isinstance(nobody, NotFound)
    assert nobody.code == "organization_not_found"
    assert first[0].decision == "allow"
    assert first[0].reserved == Decimal("2.50")
    assert repeat[0] == first[0]  # a repeated call id answers the first decision again
    assert usage[0] == 30  # 60 granted, 30 used: what is left of the slice
    assert ended[0].status == "ended"
    assert ended[0].charge == Decimal("5.00")
    stored = container.calls.get(org, "c1")
    assert (stored.status, stored.charge, stored.reserved) == ("ended", Decimal("5.00"), 0)
    view = container.credits.view(org)
    assert (view.balance, view.reserved) == (Decimal("45.00"), Decimal("0"))


def test_the_edge_s_calls_find_their_organizations_in_the_batch(
    pair: tuple[Container, Container],
) -> None:
    """Calls of the many-organization edge name no organization: the writer finds each one
    from the calling number (the called one for inbound calls) in the batch itself. A number
    nobody holds is refused alone; the others are decided for their own organizations."""
    container, _ = pair
    first, second = _payg_org(container), _payg_org(container)
    directory = container.directory
    directory.add_number(first, "+12065550100", "user", "ann@contoso.com", actor="t")
    directory.add_number(second, "+12065550111", "user", "ann@contoso.com", actor="t")
    outbound = "user_out", None
    calls = [
        CallRequest("e1", *outbound, "+12065550100", "+12065550199"),
        CallRequest("e2", *outbound, "+12065550177", "+12065550199"),  # nobody's number
        CallRequest("e3", *outbound, "+1 206 555 0111", "+12065550199"),  # not E.164 as given
        CallRequest("e4", "user_in", None, "+12065550199", "+12065550100"),
    ]
    with container.store.unit_of_work() as uow:
        outcomes = container.calls.live.write(
            uow, container.clock.now(), [Route(call) for call in calls]
        )
        uow.commit()
    container.calls.live.committed()
    (ok1, a), (ok2, unknown), (ok3, b), (ok4, inbound) = outcomes
    assert (ok1, ok2, ok3, ok4) == (True, False, True, True)
    assert isinstance(unknown, UnknownNumber)
    assert unknown.code == "unknown_number"
    assert [(r[0].org_id, r[0].upn, r[0].decision) for r in (a, b, inbound)] == [
        (first, "ann@contoso.com", "allow"),
        (second, "ann@contoso.com", "allow"),
        (first, "ann@contoso.com", "allow"),
    ]
    assert container.calls.get(second, "e3").status == "active"
    with pytest.raises(NotFound):
        container.calls.get(first, "e2")
    assert container.credits.view(first).reserved == Decimal("2.50")  # e1; e4 is inbound, free


def test_a_call_ended_by_another_process_is_never_charged_twice(
    pair: tuple[Container, Container],
) -> None:
    first, second = pair
    org = _payg_org(first)
    first.calls.authorize(org, _call("c1"))  # the first process now remembers c1 as active
    elsewhere = second.calls.end(org, "c1", 90)
    again = first.calls.end(org, "c1", 30)
    assert first.calls.live.abandoned_batches == 1  # its remembered c1 was found stale
    assert elsewhere.charge == again.charge == Decimal("5.00")
    assert again.duration_seconds == 90  # the first end stands
    assert first.calls.usage(org, "c1", 120) == 0
    assert first.credits.view(org).balance == Decimal("45.00")


def test_money_moved_by_another_writer_between_batches_is_seen_before_reserving(
    pair: tuple[Container, Container],
) -> None:
    """R-28: a reservation is sized against the balance as stored, not as last seen."""
    first, second = pair
    org = _payg_org(first)
    assert first.calls.authorize(org, _call("c1")).reserved == Decimal("2.50")
    second.credits.adjust(org, "-47.50", "spent elsewhere")  # available is now 0
    refused = first.calls.authorize(org, _call("c2"))
    assert (refused.decision, refused.reason) == ("deny", "no_credits")
    view = first.credits.view(org)
    assert (view.balance, view.reserved) == (Decimal("2.50"), Decimal("2.50"))
    assert first.calls.end(org, "c1", 60).charge == Decimal("2.50")
    assert first.credits.view(org).balance == Decimal("0.00")


def test_many_concurrent_callers_share_commits(pair: tuple[Container, Container]) -> None:
    container, _ = pair
    org = _payg_org(container)
    committer = container.calls.committer
    before = (committer.batches, committer.requests)

    def cycle(index: int) -> object:
        container.calls.authorize(org, _call(f"g{index}"))
        return container.calls.end(org, f"g{index}", 1)

    results = _in_threads(64, 16, cycle)
    assert all(not isinstance(result, BaseException) for result in results)
    batches = committer.batches - before[0]
    requests = committer.requests - before[1]
    assert requests == 128
    assert batches < requests  # group commit: some commit answered several callers
    assert container.calls.live.abandoned_batches == 0  # one writer: nothing written twice
    # 50.00 pays exactly 20 one-minute calls at 2.50, however the batches fell.
    charges = [container.calls.get(org, f"g{i}").charge for i in range(64)]
    assert sorted(set(charges)) == [Decimal("0"), Decimal("2.50")]
    assert charges.count(Decimal("2.50")) == 20
    assert container.credits.view(org).balance == Decimal("0.00")


class _GatedWriter:
    """A batch writer whose first batch waits for the test, so the next requests queue up
    and are written together."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, uow: UnitOfWork, now: datetime, ops: Sequence[str]) -> list[Outcome]:
        self.batches.append(list(ops))
        if ops == ["first"]:
            self.entered.set()
            self.gate.wait()
        elif "bad" in ops and len(ops) > 1:
            raise RuntimeError("the batch as a whole cannot be written")
        elif ops == ["bad"]:
            raise ValueError("this request is bad")
        return [(True, op.upper()) for op in ops]


def _queued_behind_a_first_batch(
    committer: GroupCommitter[str], writer: _GatedWriter, ops: list[str]
) -> dict[str, object]:
    answers: dict[str, object] = {}

    def ask(op: str) -> None:
        try:
            answers[op] = committer.run(op)
        except Exception as exc:  # collected for the assertions
            answers[op] = exc

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    writer.entered.wait()
    others = [threading.Thread(target=ask, args=(op,)) for op in ops]
    for thread in others:
        thread.start()
    while committer.pending() < len(ops):
        threading.Event().wait(0.001)
    writer.gate.set()
    for thread in [first, *others]:
        thread.join()
    return answers


def test_requests_that_queue_during_a_commit_share_the_next_one(
    sqlite_container: Container,
) -> None:
    writer = _GatedWriter()
    committer = GroupCommitter(sqlite_container.store, sqlite_container.clock, writer, linger=0)
    answers = _queued_behind_a_first_batch(committer, writer, ["a", "b", "c"])
    committer.close()
    assert answers == {"first": "FIRST", "a": "A", "b": "B", "c": "C"}
    assert sorted(writer.batches[1]) == ["a", "b", "c"]
    assert (committer.batches, committer.requests) == (2, 4)


def test_a_batch_that_cannot_be_written_is_written_again_one_request_at_a_time(
    sqlite_container: Container,
) -> None:
    writer = _GatedWriter()
    committer = GroupCommitter(sqlite_container.store, sqlite_container.clock, writer, linger=0)
    answers = _queued_behind_a_first_batch(committer, writer, ["a", "bad", "b"])
    committer.close()
    assert (answers["a"], answers["b"]) == ("A", "B")
    assert isinstance(answers["bad"], ValueError)  # only the bad request fails
    assert sorted(writer.batches[1]) == ["a", "b", "bad"]
    assert sorted(map(tuple, writer.batches[2:])) == [("a",), ("b",), ("bad",)]


# -- many requests in flight per caller: submit and the *_async methods -----------------------


def _outcome(answer: object) -> object:
    """What a caller reads from an answer (ids and the rate table's id aside)."""
    if isinstance(answer, BaseException):
        return (type(answer).__name__, getattr(answer, "code", None))
    if isinstance(answer, CallRecord):
        return (
            answer.call_id,
            answer.status,
            answer.decision,
            answer.reason,
            answer.funding,
            answer.granted_seconds,
            answer.reserved,
            answer.charge,
            answer.duration_seconds,
        )
    return answer


def test_futures_answer_exactly_what_the_blocking_calls_answer(
    pair: tuple[Container, Container],
) -> None:
    container, _ = pair
    calls = container.calls
    blocking_org = _payg_org(container)
    future_org = _payg_org(container)

    def blocking(step: tuple[str, str, int]) -> object:
        kind, call_id, seconds = step
        try:
            if kind == "authorize":
                return calls.authorize(blocking_org, _call(call_id))
            if kind == "usage":
                return calls.usage(blocking_org, call_id, seconds)
            return calls.end(blocking_org, call_id, seconds)
        except CommcreditsError as exc:
            return exc

    def submitted(step: tuple[str, str, int]) -> Future[Any]:
        kind, call_id, seconds = step
        if kind == "authorize":
            return calls.authorize_async(future_org, _call(call_id))
        if kind == "usage":
            return calls.usage_async(future_org, call_id, seconds)
        return calls.end_async(future_org, call_id, seconds)

    steps = [
        ("authorize", "c1", 0),
        ("usage", "c1", 50),  # 10 seconds left: a second slice is reserved
        ("authorize", "c2", 0),
        ("end", "c1", 90),
        ("end", "missing", 10),
        ("usage", "c2", -1),  # refused before it is queued
        ("authorize", "", 0),  # no call id
        ("authorize", "c1", 0),  # a repeated call id answers the first decision
        ("end", "c2", 30),
        ("end", "c2", 45),  # ended already: never charged twice
    ]
    expected = [_outcome(blocking(step)) for step in steps]
    futures = [submitted(step) for step in steps]  # all in flight before any is answered
    answers = [_outcome(future.exception() or future.result()) for future in futures]
    assert answers == expected
    money = [container.credits.view(org) for org in (blocking_org, future_org)]
    # 5.00 for c1's 90 seconds and 2.50 for c2's 30, nothing left reserved, in both.
    assert [(view.balance, view.reserved) for view in money] == [(Decimal("42.50"), 0)] * 2


def test_an_error_in_one_submitted_request_reaches_only_its_future(
    sqlite_container: Container,
) -> None:
    writer = _GatedWriter()
    committer = GroupCommitter(sqlite_container.store, sqlite_container.clock, writer, linger=0)
    first = committer.submit("first")
    writer.entered.wait()
    futures = {op: committer.submit(op) for op in ("a", "bad", "b")}
    writer.gate.set()
    assert first.result(timeout=10) == "FIRST"
    assert (futures["a"].result(timeout=10), futures["b"].result(timeout=10)) == ("A", "B")
    with pytest.raises(ValueError, match="this request is bad"):
        futures["bad"].result(timeout=10)
    committer.close()
    assert writer.batches[1] == ["a", "bad", "b"]  # one batch, in the order submitted
    assert sorted(map(tuple, writer.batches[2:])) == [("a",), ("b",), ("bad",)]


def test_hundreds_of_calls_in_flight_never_spend_more_than_the_balance(
    pair: tuple[Container, Container],
) -> None:
    """R-28: 50.00 pays exactly 20 one-minute calls at 2.50, with 4 callers each keeping 50
    calls (authorize and end) in flight at once."""
    container, _ = pair
    org = _payg_org(container)
    calls = container.calls

    def caller(worker: int) -> list[Future[CallRecord]]:
        ends = []
        for n in range(50):
            call_id = f"w{worker}-{n}"
            calls.authorize_async(org, _call(call_id))
            ends.append(calls.end_async(org, call_id, 60))
        return ends

    per_caller = _in_threads(4, 4, caller)
    ended = [future.result(timeout=60) for ends in per_caller for future in ends]  # type: ignore[attr-defined]
    charged = [record.charge for record in ended if record.charge]
    assert charged == [Decimal("2.50")] * 20
    assert {record.status for record in ended} == {"ended", "denied"}
    view = container.credits.view(org)
    assert (view.balance, view.reserved) == (Decimal("0.00"), Decimal("0"))
    assert container.calls.live.abandoned_batches == 0

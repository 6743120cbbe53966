"""Idempotency keys (API.md, Conventions): replay, reuse, and a concurrent repeat."""

from __future__ import annotations

import threading

import msgspec
import pytest
from sqlalchemy import func, select

from commcredits.app import Container
from commcredits.domain.errors import Conflict
from commcredits.domain.organizations import Organization
from commcredits.services.idempotency import Idempotency, IdempotentReplay, fingerprint
from commcredits.services.orgs import NewOrganization
from commcredits.store import tables

CONTOSO = NewOrganization(name="Contoso", country="US", currency="USD", billing="prepaid")


def _request(key: str, body: bytes) -> Idempotency:
    def render(org: Organization) -> tuple[int, str]:
        return 201, msgspec.json.encode({"id": org.id}).decode()

    return Idempotency("scope_1", key, fingerprint("POST", "/v1/orgs", body), render)


def _org_count(container: Container) -> int:
    with container.store.unit_of_work(read_only=True) as uow:
        return int(
            uow.conn.execute(select(func.count()).select_from(tables.organizations)).scalar_one()
        )


def test_a_repeated_request_replays_the_first_response_and_does_nothing(
    container: Container,
) -> None:
    first = container.orgs.create(CONTOSO, request=_request("k1", b'{"name":"Contoso"}'))
    with pytest.raises(IdempotentReplay) as replay:
        container.orgs.create(CONTOSO, request=_request("k1", b'{"name":  "Contoso"}'))
    assert replay.value.status_code == 201
    assert msgspec.json.decode(replay.value.body) == {"id": first.id}
    assert _org_count(container) == 1


def test_the_same_key_with_another_body_is_refused(container: Container) -> None:
    container.orgs.create(CONTOSO, request=_request("k1", b'{"name":"Contoso"}'))
    with pytest.raises(Conflict) as refused:
        container.orgs.create(CONTOSO, request=_request("k1", b'{"name":"Fabrikam"}'))
    assert refused.value.code == "idempotency_key_reused"
    assert _org_count(container) == 1


def test_a_refused_request_leaves_its_key_free_for_a_corrected_retry(
    container: Container,
) -> None:
    bad = NewOrganization(name="Contoso", country="ZZ", currency="USD", billing="prepaid")
    with pytest.raises(Exception, match="country"):
        container.orgs.create(bad, request=_request("k1", b"{}"))
    container.orgs.create(CONTOSO, request=_request("k1", b"{}"))
    assert _org_count(container) == 1


def test_concurrent_repeats_of_one_key_create_exactly_one_organization(
    container: Container,
) -> None:
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        try:
            org = container.orgs.create(CONTOSO, request=_request("same", b"{}"))
            outcomes.append(f"created {org.id}")
        except IdempotentReplay as replay:
            outcomes.append(f"replayed {msgspec.json.decode(replay.body)['id']}")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 8
    assert sum(outcome.startswith("created") for outcome in outcomes) == 1
    assert len({outcome.split()[1] for outcome in outcomes}) == 1
    assert _org_count(container) == 1

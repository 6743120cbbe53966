"""Secrets: API keys and passwords are kept only as hashes, card numbers never; secrets are
compared in constant time; neither keys nor card numbers reach the logs."""

from __future__ import annotations

import ast
import hmac
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from litestar.testing import TestClient
from sqlalchemy import MetaData, select

import commcredits
from commcredits.api.app import create_app
from commcredits.app import Container
from commcredits.domain.errors import Unauthenticated
from tests.conftest import OPERATOR_KEY
from tests.security.world import CARD_CVC, CARD_NUMBER, World, bearer, seed, service

Client = TestClient  # type: ignore[type-arg]
SOURCE = Path(commcredits.__file__).parent
MASTERCARD = "5555555555554444"
HOLDER = "Holder Zyxwvut"
"""A name that appears nowhere else: if it shows up in a log, request bodies are logged."""


@pytest.fixture
def seeded(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Container, World]]:
    with service(sqlite_template, tmp_path) as container:
        yield container, seed(container, "Secret", "+1212555")


def _database_text(container: Container) -> str:
    """Every value of every row of every table, as one text to search."""
    metadata = MetaData()
    with container.store.engine.connect() as conn:
        metadata.reflect(conn)
        values = [
            str(value)
            for table in metadata.sorted_tables
            for row in conn.execute(select(table))
            for value in row
            if value is not None
        ]
    return "\n".join(values)


def test_api_keys_are_stored_only_as_hashes(seeded: tuple[Container, World]) -> None:
    container, world = seeded
    with TestClient(create_app(container)) as client:
        issued = client.post(
            f"/v1/orgs/{world.org}/keys",
            json={"name": "ci", "role": "reader"},
            headers=bearer(OPERATOR_KEY),
        )
        assert issued.status_code == 201
        key = issued.json()["key"]
        listed = client.get(f"/v1/orgs/{world.org}/keys", headers=bearer(key))
        assert listed.status_code == 200
        assert key.split(".")[1] not in listed.text  # shown once, never listed
    stored = _database_text(container)
    for secret in [key, *world.keys.values(), OPERATOR_KEY]:
        assert secret.split(".")[-1] not in stored
    assert container.keys.authenticate(key).org_id == world.org


def test_card_numbers_and_security_codes_are_never_stored(
    seeded: tuple[Container, World],
) -> None:
    container, world = seeded
    with TestClient(create_app(container)) as client:
        added = client.post(
            f"/v1/orgs/{world.org}/payment-methods",
            json={
                "type": "card",
                "number": "5555 5555 5555 4444",
                "exp_month": 3,
                "exp_year": 2031,
                "cvc": "918",
                "holder": HOLDER,
            },
            headers=bearer(world.keys["billing"]),
        )
        assert added.status_code == 201, added.text
        assert added.json()["last4"] == "4444"
        assert MASTERCARD not in added.text
    stored = _database_text(container)
    for number in (MASTERCARD, CARD_NUMBER, MASTERCARD[:12], CARD_NUMBER[:12]):
        assert number not in stored
    metadata = MetaData()
    with container.store.engine.connect() as conn:
        metadata.reflect(conn, only=["payment_methods"])
        table = metadata.tables["payment_methods"]
        rows = [dict(row._mapping) for row in conn.execute(select(table))]
    assert {"918", CARD_CVC}.isdisjoint({str(v) for row in rows for v in row.values()})
    assert not any("cvc" in c.name or c.name == "number" for c in table.columns)


def test_passwords_are_stored_as_argon2id_hashes(seeded: tuple[Container, World]) -> None:
    container, world = seeded
    signin = getattr(container, "signin", None)
    if signin is None:
        pytest.skip("this build has no console sign-in")
    password = "correct horse battery staple 42"
    signin.set_password(world.org, world.admin_email, password)
    stored = _database_text(container)
    assert password not in stored
    metadata = MetaData()
    with container.store.engine.connect() as conn:
        metadata.reflect(conn, only=["admins"])
        admins = metadata.tables["admins"]
        hashes = [h for (h,) in conn.execute(select(admins.c.password_hash)) if h]
    assert len(hashes) == 1
    assert hashes[0].startswith("$argon2id$")
    assert PasswordHasher().verify(hashes[0], password)
    assert signin.sign_in(world.admin_email, password).org_id == world.org


class _Spy:
    """Records each call of the wrapped function and answers as it does."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.wrapped(*args)


def test_keys_are_checked_in_constant_time_even_when_the_key_id_is_unknown(
    seeded: tuple[Container, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    container, world = seeded
    spy = _Spy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    key_id, _, secret = world.keys["admin"].partition(".")
    wrong_secret = f"{key_id}.{'x' * len(secret)}"
    unknown_id = f"cck_key_00000000000000000000000000.{secret}"
    refusals = []
    for token in (wrong_secret, unknown_id, OPERATOR_KEY[:-1] + "X"):
        before = len(spy.calls)
        with pytest.raises(Unauthenticated) as refused:
            container.keys.authenticate(token)
        refusals.append((refused.value.code, refused.value.message))
        assert len(spy.calls) > before, f"{token[:12]}... was not compared in constant time"
    # The same refusal whether the id exists or not: no way to find valid key ids.
    assert refusals[0] == refusals[1]
    before = len(spy.calls)
    assert container.keys.authenticate(world.keys["reader"]).role == "reader"
    assert len(spy.calls) > before


def test_an_unknown_admin_costs_the_same_argon2_verification_as_a_known_one(
    seeded: tuple[Container, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    container, world = seeded
    signin = getattr(container, "signin", None)
    if signin is None:
        pytest.skip("this build has no console sign-in")
    from commcredits.services import signin as module

    signin.set_password(world.org, world.admin_email, "a long enough password")
    verified: list[str] = []

    class Recording(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            verified.append(str(hash))
            return super().verify(hash, password)

    monkeypatch.setattr(module, "_hasher", Recording())
    for email in (world.admin_email, "nobody@secret.example.com", "not an address"):
        before = len(verified)
        with pytest.raises(Unauthenticated):
            signin.sign_in(email, "the wrong password!")
        assert len(verified) == before + 1, email


SECRET_NAMES = ("secret", "password", "token", "digest", "hash", "csrf", "cvc")
NOT_SECRET_COMPARISONS = {
    ("console/auth.py", "password != form.get('confirm')"): (
        "a new password against its confirmation, both typed by the same person"
    ),
    ("domain/licensing.py", "token == ANY_CALLING_PLAN"): "a parsed word of a SKU rule",
    ("domain/licensing.py", "token != ANY_CALLING_PLAN"): "a parsed word of a SKU rule",
}
"""Comparisons whose names look secret but are not, each with the reason."""


def _is_sql(node: ast.expr) -> bool:
    """``table.c.token_hash == ...`` builds a WHERE clause: the database finds the row by the
    SHA-256 of a 256-bit random token, which tells a caller nothing it can use."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "c"
    )


def _named(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _named(node.func)
    if isinstance(node, ast.Subscript):
        return _named(node.value)
    return ""


def test_no_secret_is_compared_with_a_plain_equality_anywhere_in_the_code() -> None:
    """``==`` on a secret stops at the first differing byte, which a caller can time;
    ``hmac.compare_digest`` (or argon2's verify) does not."""
    plain = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Constant) or _is_sql(side) for side in sides):
                continue  # against a literal (``kind == "admin"``), or a WHERE clause
            where = (path.relative_to(SOURCE).as_posix(), ast.unparse(node))
            if where in NOT_SECRET_COMPARISONS:
                continue
            names = [_named(side).lower() for side in sides]
            if any(word in name for name in names for word in SECRET_NAMES):
                plain.append(f"{where[0]}:{node.lineno}: {where[1]}")
    assert plain == []


class _Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {self.format(record)}")


def test_neither_keys_nor_card_data_reach_the_logs(seeded: tuple[Container, World]) -> None:
    container, world = seeded
    collected = _Collecting()
    loggers = [logging.getLogger(name) for name in ("", "commcredits", "litestar")]
    with TestClient(create_app(container)) as client:
        # After start-up: the framework configures logging as it starts.
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.addHandler(collected)
            logger.setLevel(logging.DEBUG)
        try:
            key = _use_secrets(client, world)
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeHandler(collected)
                logger.setLevel(level)
    logged = "\n".join(collected.lines)
    key_id = key.split(".")[0].removeprefix("cck_")
    assert key_id in logged, "the access log (which names the key's id) was not captured"
    secrets = [key.split(".")[1], OPERATOR_KEY, *[k.split(".")[1] for k in world.keys.values()]]
    for secret in secrets:
        assert secret not in logged
    for card in (MASTERCARD, "4000000000000002", HOLDER):
        assert card not in logged


def _use_secrets(client: Client, world: World) -> str:
    """Requests that carry keys and card data, good and bad ones; returns a key it made."""
    base = f"/v1/orgs/{world.org}"
    issued = client.post(
        f"{base}/keys", json={"name": "logged?", "role": "admin"}, headers=bearer(OPERATOR_KEY)
    )
    key = str(issued.json()["key"])
    for number, cvc in ((MASTERCARD, "918"), ("4000000000000002", "123"), ("4242", "1")):
        client.post(
            f"{base}/payment-methods",
            json={
                "type": "card",
                "number": number,
                "exp_month": 3,
                "exp_year": 2031,
                "cvc": cvc,
                "holder": HOLDER,
            },
            headers=bearer(key),
        )
    client.get(f"{base}/credits", headers=bearer(key))
    client.get(f"{base}/credits", headers=bearer(key + "tampered"))
    client.get(f"{base}/credits", headers={"Authorization": key})
    client.get("/v1/orgs", headers=bearer(OPERATOR_KEY))
    return key

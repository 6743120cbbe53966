"""Every operation of ``/openapi.json``, fuzzed in process: no answer is a server error and every
answer matches the schema the service publishes.

Requests carry the admin key of a seeded organization (the operator key for the platform's own
operations) and, most of the time, the ids of that organization's real users, calls, invoices and
so on, so they reach real objects rather than stopping at a 404. Both valid and invalid requests
are generated.

The budget is small by default (``make test``); ``FUZZ_EXAMPLES=500 make stress`` runs the long
form. ``FUZZ_OPERATIONS`` (a regular expression over ``METHOD /path``) narrows a run while
investigating.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from commcredits.api.app import create_app
from commcredits.app import Container
from tests.conftest import OPERATOR_KEY
from tests.security.world import World, seed, service

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
ONLY = re.compile(os.environ.get("FUZZ_OPERATIONS", ".*"))
PLATFORM_PATHS = re.compile(r"^/v1/(orgs$|rates|system/|calls)")
"""Operations only the operator (or the telephony edge) may call."""
REQUEST_SECONDS = 60
"""No request may take longer (a hang is a failure, shown with its request)."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Target:
    """The service under test, its schema and the seeded organization."""

    def __init__(self, container: Container, world: World) -> None:
        self.container = container
        self.world = world
        self.app = create_app(container)
        self.schema = schemathesis.openapi.from_asgi("/openapi.json", self.app)

    def operations(self) -> Iterator[Any]:
        for result in self.schema.get_all_operations():
            yield result.ok()

    @property
    def documents_errors(self) -> bool:
        """Whether the served document describes the contract's error body (the app wires
        ``api.errors.document_error_responses`` at start-up)."""
        components = self.schema.raw_schema.get("components", {})
        return "Error" in components.get("schemas", {})

    def auth_for(self, path: str) -> dict[str, str]:
        key = OPERATOR_KEY if PLATFORM_PATHS.match(path) else self.world.keys["admin"]
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def target(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with service(sqlite_template, tmp_path_factory.mktemp("fuzz")) as container:
        world = seed(container, "Fuzz", "+1212555")
        yield Target(container, world)


def _fuzz(target: Target, operation: Any, statuses: Counter[int], checks: list[Any]) -> None:
    """Hypothesis over one operation; raises the first failing example's report."""
    real = target.world.path_values()
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    headers = target.auth_for(operation.path)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=EXAMPLES <= 50,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, use_real_ids=st.integers(0, 4))
    def run(case: Any, use_real_ids: int) -> None:
        if use_real_ids and case.path_parameters:
            # Mostly real ids (else nearly every request stops at "no such organization").
            for name in case.path_parameters:
                if name in real:
                    case.path_parameters[name] = real[name]
        response = case.call(headers=headers, timeout=REQUEST_SECONDS)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=headers)

    run()


@pytest.mark.timeout(300 + 60 * EXAMPLES)
def test_every_operation_answers_within_its_schema_and_never_with_a_server_error(
    target: Target,
) -> None:
    failures: list[str] = []
    answered: dict[str, Counter[int]] = {}
    checks = CHECKS if target.documents_errors else [not_a_server_error]
    for operation in target.operations():
        label = f"{operation.method.upper()} {operation.path}"
        if not ONLY.search(label):
            continue
        answered[label] = Counter()
        try:
            _fuzz(target, operation, answered[label], checks)
        except (FailureGroup, AssertionError) as exc:
            failures.append(f"{label}\n{exc}")
    assert answered, "no operation matched FUZZ_OPERATIONS"
    assert not failures, "\n\n".join(failures)
    # The fuzzing reached the operations themselves, not only the key check in front of them.
    locked_out = [label for label, seen in answered.items() if set(seen) <= {401, 403}]
    assert locked_out == []
    succeeded = [label for label, seen in answered.items() if any(200 <= s < 300 for s in seen)]
    assert len(succeeded) >= len(answered) // 3, sorted(set(answered) - set(succeeded))
    if not target.documents_errors:
        pytest.xfail(
            "no server errors, but the schema checks need the error body documented:"
            " api/app.py must pass on_startup=[document_error_responses]"
        )

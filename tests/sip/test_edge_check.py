"""`commcredits edge check` against a served commcredits: can a proxy reach the API with its key?"""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from commcredits.cli.main import app
from tests.sip.conftest import OPERATOR_KEY, Commcredits, Org, new_org
from tests.support.postgres import free_port

runner = CliRunner()


def edge_check(url: str, key: str) -> tuple[int, str]:
    done = runner.invoke(app, ["edge", "check", "--url", url, "--key", key, "--timeout", "3"])
    return done.exit_code, " ".join(done.output.split())


@pytest.fixture
def org(operator: httpx.Client) -> Org:
    (found,) = new_org(operator, "50.00")
    return found


def test_the_platform_telephony_key_passes_and_the_check_leaves_nothing_behind(
    commcredits: Commcredits, org: Org
) -> None:
    status, output = edge_check(commcredits.url, commcredits.telephony_key)
    assert (status, output) == (0, f"ok: {commcredits.url} answers and the key may do call control")
    # The probe authorizes nothing: no call, no reservation, no charge.
    assert org.calls() == []
    assert org.balance() == "50.00"


def test_the_operator_key_passes(commcredits: Commcredits) -> None:
    status, output = edge_check(commcredits.url + "/", OPERATOR_KEY)
    assert status == 0
    assert output.startswith("ok:")


def test_an_unknown_key_is_refused_with_401_and_exit_status_1(commcredits: Commcredits) -> None:
    status, output = edge_check(commcredits.url, "cck_not.a-key-anyone-issued")
    assert status == 1
    assert "401" in output
    assert "commcredits keys create-telephony" in output


def test_an_organizations_own_telephony_key_is_refused_with_403_and_exit_status_1(
    commcredits: Commcredits, operator: httpx.Client, org: Org
) -> None:
    # An organization's telephony key controls that organization's calls only, through
    # /v1/orgs/{org}/calls: a proxy serving numbers of many organizations cannot use it.
    issued = operator.post(f"/v1/orgs/{org.id}/keys", json={"name": "pbx", "role": "telephony"})
    assert issued.status_code == 201, issued.text
    status, output = edge_check(commcredits.url, issued.json()["key"])
    assert status == 1
    assert "403" in output
    assert "platform telephony key" in output


def test_an_address_where_nothing_listens_is_unreachable_with_exit_status_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, output = edge_check(url, "cck_anything")
    assert status == 2
    assert f"cannot reach {url}" in output


def test_a_server_that_is_not_commcredits_is_reported_as_such(commcredits: Commcredits) -> None:
    # The right server, the wrong path: /healthz is not there.
    status, output = edge_check(commcredits.url + "/nothing", commcredits.telephony_key)
    assert status == 2
    assert "not commcredits" in output


def test_an_empty_key_is_refused_without_asking(commcredits: Commcredits) -> None:
    status, output = edge_check(commcredits.url, "  ")
    assert status == 1
    assert "no key given" in output

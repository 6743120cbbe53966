"""HTTP: organizations, admins and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from msgspec import UnsetType

from commcredits.api.auth import principal_of
from commcredits.api.schemas import (
    AdminOut,
    CreateAdmin,
    CreateKey,
    CreateOrganization,
    IssuedKeyOut,
    KeyOut,
    OrganizationOut,
    UpdateOrganization,
)
from commcredits.api.support import blocking, container_of, idempotency_for
from commcredits.domain.errors import Forbidden
from commcredits.services.keys import IssuedKey
from commcredits.services.orgs import MaskNumbers, NewOrganization, OrganizationChanges

AnyRequest = Request[Any, Any, Any]


def _issued(issued: IssuedKey) -> IssuedKeyOut:
    base = KeyOut.of(issued.key)
    return IssuedKeyOut(**{f: getattr(base, f) for f in base.__struct_fields__}, key=issued.secret)


@post("/orgs", opt={"area": "platform"}, status_code=201, summary="Create an organization")
async def create_org(request: AnyRequest, data: JSONBody[CreateOrganization]) -> OrganizationOut:
    container = container_of(request)
    idem = await idempotency_for(request, principal_of(request).key_id, 201, OrganizationOut.of)
    org = await blocking(
        container.orgs.create,
        NewOrganization(
            name=data.name,
            country=data.country,
            currency=data.currency,
            billing=data.billing,
            overage_enabled=data.overage_enabled,
        ),
        request=idem,
    )
    return OrganizationOut.of(org)


@get("/orgs", opt={"area": "platform"}, summary="List organizations (operator)")
async def list_orgs(
    request: AnyRequest,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    after: FromQuery[str | None] = None,
) -> list[OrganizationOut]:
    container = container_of(request)
    orgs = await blocking(container.orgs.list_orgs, limit=limit, after=after)
    masking = await blocking(container.orgs.mask_numbers, [org.id for org in orgs])
    return [OrganizationOut.of(org, masking.get(org.id)) for org in orgs]


@get("/orgs/{org:str}", opt={"area": "org"}, summary="Get an organization")
async def get_org(request: AnyRequest, org: FromPath[str]) -> OrganizationOut:
    container = container_of(request)
    found = await blocking(container.orgs.get, org)
    masking = await blocking(container.orgs.mask_numbers, [found.id])
    return OrganizationOut.of(found, masking.get(found.id))


@patch(
    "/orgs/{org:str}",
    opt={"area": "org"},
    summary="Change name, billing, overage, policies or number masking",
)
async def update_org(
    request: AnyRequest, org: FromPath[str], data: JSONBody[UpdateOrganization]
) -> OrganizationOut:
    changes = OrganizationChanges(
        name=data.name if isinstance(data.name, str) else None,
        billing=data.billing if isinstance(data.billing, str) else None,
        overage_enabled=data.overage_enabled if isinstance(data.overage_enabled, bool) else None,
        pstn_policy=data.pstn_policy if isinstance(data.pstn_policy, str) else None,
        dialout_policy=data.dialout_policy if isinstance(data.dialout_policy, str) else None,
        mask_numbers=_mask_numbers(request, data.mask_numbers),
    )
    container = container_of(request)
    updated = await blocking(container.orgs.update, org, changes)
    masking = await blocking(container.orgs.mask_numbers, [updated.id])
    return OrganizationOut.of(updated, masking.get(updated.id))


def _mask_numbers(request: AnyRequest, value: bool | UnsetType | None) -> MaskNumbers | None:
    """Number masking is the operator's to switch (our choice, as for a report request)."""
    if isinstance(value, UnsetType):
        return None
    if principal_of(request).role != "operator":
        raise Forbidden("only the operator may switch number masking", code="forbidden")
    return "default" if value is None else "on" if value else "off"


@post("/orgs/{org:str}/admins", opt={"area": "admins"}, status_code=201, summary="Add an admin")
async def create_admin(
    request: AnyRequest, org: FromPath[str], data: JSONBody[CreateAdmin]
) -> AdminOut:
    admin = await blocking(
        container_of(request).orgs.add_admin, org, data.email, data.display_name, list(data.roles)
    )
    return AdminOut.of(admin)


@get("/orgs/{org:str}/admins", opt={"area": "admins"}, summary="List admins")
async def list_admins(request: AnyRequest, org: FromPath[str]) -> list[AdminOut]:
    return [AdminOut.of(a) for a in await blocking(container_of(request).orgs.admins, org)]


@post(
    "/orgs/{org:str}/keys",
    opt={"area": "keys"},
    status_code=201,
    summary="Create an API key (the key is shown once)",
)
async def create_key(
    request: AnyRequest, org: FromPath[str], data: JSONBody[CreateKey]
) -> IssuedKeyOut:
    issued = await blocking(container_of(request).keys.create_org_key, org, data.name, data.role)
    return _issued(issued)


@get("/orgs/{org:str}/keys", opt={"area": "keys"}, summary="List API keys (never the secrets)")
async def list_keys(request: AnyRequest, org: FromPath[str]) -> list[KeyOut]:
    return [KeyOut.of(k) for k in await blocking(container_of(request).keys.list_keys, org)]


@delete("/orgs/{org:str}/keys/{key_id:str}", opt={"area": "keys"}, summary="Revoke an API key")
async def revoke_key(request: AnyRequest, org: FromPath[str], key_id: FromPath[str]) -> None:
    await blocking(container_of(request).keys.revoke, org, key_id)


router = Router(
    path="/v1",
    route_handlers=[
        create_org,
        list_orgs,
        get_org,
        update_org,
        create_admin,
        list_admins,
        create_key,
        list_keys,
        revoke_key,
    ],
    tags=["organizations"],
)

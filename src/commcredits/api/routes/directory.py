"""HTTP: users, subscriptions, licenses, numbers, policies and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from msgspec import UNSET as UNSET_MSGSPEC

from commcredits.api.auth import principal_of
from commcredits.api.schemas_directory import (
    AssignNumber,
    AuditOut,
    BulkError,
    BulkLicenses,
    BulkOut,
    BulkResultOut,
    ChangeLicenses,
    CreateNumber,
    CreateSubscription,
    CreateUser,
    LicensesOut,
    NumberOut,
    SubscriptionOut,
    UpdateUser,
    UserOut,
)
from commcredits.api.support import blocking, container_of
from commcredits.services.directory import UNSET as KEEP
from commcredits.services.directory import UserChanges

AnyRequest = Request[Any, Any, Any]
Limit = Annotated[int, Parameter(ge=1, le=1000)]


def _actor(request: AnyRequest) -> str:
    return principal_of(request).key_id


@post("/users", opt={"area": "directory"}, status_code=201, summary="Create a user")
async def create_user(
    request: AnyRequest, org: FromPath[str], data: JSONBody[CreateUser]
) -> UserOut:
    container = container_of(request)
    user = await blocking(
        container.directory.create_user,
        org,
        data.upn,
        data.display_name,
        data.usage_location,
        actor=_actor(request),
    )
    return UserOut.of(user, await blocking(container.orgs.get, org))


@get("/users", opt={"area": "directory"}, summary="List users (by UPN), filtered")
async def list_users(
    request: AnyRequest,
    org: FromPath[str],
    sku: FromQuery[str | None] = None,
    search: FromQuery[str | None] = None,
    usage_location: FromQuery[str | None] = None,
    limit: Limit = 100,
    after: Annotated[str | None, Parameter(description="the last UPN of the previous page")] = None,
) -> list[UserOut]:
    container = container_of(request)
    users = await blocking(
        container.directory.list_users,
        org,
        sku=sku,
        search=search,
        usage_location=usage_location,
        limit=limit,
        after=after,
    )
    organization = await blocking(container.orgs.get, org)
    return [UserOut.of(user, organization) for user in users]


@get("/users/{user:str}", opt={"area": "directory"}, summary="One user, by id or UPN")
async def get_user(request: AnyRequest, org: FromPath[str], user: FromPath[str]) -> UserOut:
    container = container_of(request)
    found = await blocking(container.directory.get_user, org, user)
    return UserOut.of(found, await blocking(container.orgs.get, org))


@patch("/users/{user:str}", opt={"area": "directory"}, summary="Change a user and its policies")
async def update_user(
    request: AnyRequest, org: FromPath[str], user: FromPath[str], data: JSONBody[UpdateUser]
) -> UserOut:
    container = container_of(request)

    def kept(value: Any) -> Any:
        return KEEP if value is UNSET_MSGSPEC else value

    changes = UserChanges(
        display_name=data.display_name if isinstance(data.display_name, str) else None,
        usage_location=kept(data.usage_location),
        pstn_policy=kept(data.pstn_policy),
        dialout_policy=kept(data.dialout_policy),
        spend_limit=kept(data.spend_limit),
    )
    updated = await blocking(
        container.directory.update_user, org, user, changes, actor=_actor(request)
    )
    return UserOut.of(updated, await blocking(container.orgs.get, org))


@delete("/users/{user:str}", opt={"area": "directory"}, summary="Delete a user")
async def delete_user(request: AnyRequest, org: FromPath[str], user: FromPath[str]) -> None:
    await blocking(container_of(request).directory.delete_user, org, user, actor=_actor(request))


@post(
    "/users/{user:str}/licenses",
    opt={"area": "directory"},
    status_code=200,
    summary="Assign and remove licenses, all or nothing (R-11..R-13)",
)
async def change_licenses(
    request: AnyRequest, org: FromPath[str], user: FromPath[str], data: JSONBody[ChangeLicenses]
) -> LicensesOut:
    updated = await blocking(
        container_of(request).directory.change_licenses,
        org,
        user,
        data.add,
        data.remove,
        actor=_actor(request),
    )
    return LicensesOut(licenses=sorted(updated.licenses))


@post(
    "/licenses:bulk",
    opt={"area": "directory"},
    status_code=200,
    summary="One license change for many users (R-14); each user all or nothing",
)
async def bulk_licenses(
    request: AnyRequest, org: FromPath[str], data: JSONBody[BulkLicenses]
) -> BulkOut:
    results = await blocking(
        container_of(request).directory.bulk_change_licenses,
        org,
        data.users,
        data.add,
        data.remove,
        actor=_actor(request),
    )
    rendered = [
        BulkResultOut(user=r.user, ok=True, licenses=list(r.licenses))
        if r.ok
        else BulkResultOut(
            user=r.user,
            ok=False,
            error=BulkError(code=r.error.code, message=r.error.message) if r.error else None,
        )
        for r in results
    ]
    succeeded = sum(r.ok for r in results)
    return BulkOut(succeeded=succeeded, failed=len(results) - succeeded, results=rendered)


@post("/subscriptions", opt={"area": "directory"}, status_code=201, summary="Buy seats of a SKU")
async def create_subscription(
    request: AnyRequest, org: FromPath[str], data: JSONBody[CreateSubscription]
) -> SubscriptionOut:
    subscription = await blocking(
        container_of(request).directory.set_subscription,
        org,
        data.sku,
        data.quantity,
        actor=_actor(request),
    )
    return SubscriptionOut.of(subscription)


@get("/subscriptions", opt={"area": "directory"}, summary="Seats bought, assigned, available")
async def list_subscriptions(request: AnyRequest, org: FromPath[str]) -> list[SubscriptionOut]:
    found = await blocking(container_of(request).directory.subscriptions, org)
    return [SubscriptionOut.of(s) for s in found]


@post("/numbers", opt={"area": "directory"}, status_code=201, summary="Add a phone number")
async def add_number(
    request: AnyRequest, org: FromPath[str], data: JSONBody[CreateNumber]
) -> NumberOut:
    number = await blocking(
        container_of(request).directory.add_number,
        org,
        data.number,
        data.kind,
        data.assigned_to,
        actor=_actor(request),
    )
    return NumberOut.of(
        number, {number.user_id: data.assigned_to} if number.user_id and data.assigned_to else {}
    )


@get("/numbers", opt={"area": "directory"}, summary="The organization's phone numbers")
async def list_numbers(
    request: AnyRequest, org: FromPath[str], kind: FromQuery[str | None] = None
) -> list[NumberOut]:
    numbers, upns = await blocking(container_of(request).directory.numbers, org, kind=kind)
    return [NumberOut.of(n, upns) for n in numbers]


@patch("/numbers/{number:str}", opt={"area": "directory"}, summary="Assign or release a number")
async def assign_number(
    request: AnyRequest, org: FromPath[str], number: FromPath[str], data: JSONBody[AssignNumber]
) -> NumberOut:
    phone = await blocking(
        container_of(request).directory.assign_number,
        org,
        number,
        data.assigned_to,
        actor=_actor(request),
    )
    upns = {phone.user_id: data.assigned_to} if phone.user_id and data.assigned_to else {}
    return NumberOut.of(phone, upns)


@delete("/numbers/{number:str}", opt={"area": "directory"}, summary="Remove a number")
async def remove_number(request: AnyRequest, org: FromPath[str], number: FromPath[str]) -> None:
    await blocking(
        container_of(request).directory.remove_number, org, number, actor=_actor(request)
    )


@get("/audit", opt={"area": "directory"}, summary="Who changed what, newest first")
async def audit(
    request: AnyRequest,
    org: FromPath[str],
    limit: Limit = 100,
    before: Annotated[str | None, Parameter(description="an id from the previous page")] = None,
) -> list[AuditOut]:
    entries = await blocking(container_of(request).directory.audit, org, limit=limit, before=before)
    return [AuditOut.of(entry) for entry in entries]


router = Router(
    path="/v1/orgs/{org:str}",
    route_handlers=[
        create_user,
        list_users,
        get_user,
        update_user,
        delete_user,
        change_licenses,
        bulk_licenses,
        create_subscription,
        list_subscriptions,
        add_number,
        list_numbers,
        assign_number,
        remove_number,
        audit,
    ],
    tags=["directory"],
)

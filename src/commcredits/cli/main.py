"""The ``commcredits`` command line. Each command parses, calls one use case and renders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from commcredits import __version__
from commcredits.app import Container, build
from commcredits.domain.errors import CommcreditsError
from commcredits.settings import Settings

app = typer.Typer(
    help="Communications Credits: licensing, funding, rating and call control for telephony.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Platform API keys (operator, telephony edge).", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations.", no_args_is_help=True)
jobs_app = typer.Typer(help="The job runner.", no_args_is_help=True)
clock_app = typer.Typer(help="The service clock.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(orgs_app, name="orgs")
app.add_typer(jobs_app, name="jobs")
app.add_typer(clock_app, name="clock")

console = Console()
errors = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: the settings')")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _container(database_url: str | None = None, **overrides: Any) -> Container:
    return build(_settings(database_url=database_url, **overrides))


def _print_json(value: Any) -> None:
    typer.echo(msgspec.json.format(msgspec.json.encode(value)).decode())


def _fail(exc: CommcreditsError) -> None:
    errors.print(f"[red]error[/red] {exc.code}: {exc.message}")
    raise typer.Exit(1)


def _run(database_url: str | None, action: Any) -> Any:
    """Run ``action(container)`` and close the container; a refusal ends the command."""
    container = _container(database_url)
    try:
        return action(container)
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()


def _table(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    if not rows:
        console.print(f"{title}: none")
        return
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) if v is not None else "" for v in row.values()))
    console.print(table)


def _output(title: str, rows: list[dict[str, Any]], as_json: bool, *, one: bool = False) -> None:
    """A table for people, JSON for scripts (one object when ``one``, else a list)."""
    if as_json:
        _print_json(rows[0] if one else rows)
    else:
        _table(title, rows)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    database_url: DatabaseUrl = None,
    clock: Annotated[str | None, typer.Option(help="system or simulated")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="HTTP worker processes sharing the port.")
    ] = 1,
) -> None:
    """Migrate the database and serve the HTTP API (and the job runner, on the system clock)."""
    import os

    import uvicorn

    from commcredits import logs

    overrides = {"database_url": database_url, "clock": clock, "host": host, "port": port}
    settings = _settings(**overrides)
    logs.configure(settings.log_level)
    container = build(settings)
    issued = container.keys.ensure_operator_key()
    sample = container.rating.ensure_loaded()
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"commcredits {__version__} listening on [bold]{url}[/bold]")
    console.print(f"database: {settings.database_url}; clock: {settings.clock}; workers: {workers}")
    if sample is not None:
        console.print(
            f"no rate table yet: loaded the sample table ({sample.rows} rows, sample prices)"
        )
    if issued is not None:
        console.print("operator key (shown once, stored hashed; keep it safe):")
        console.print(f"  [bold]{issued.secret}[/bold]")
    stop_jobs = None
    if settings.clock == "system":
        # One job runner, in this process, whatever the number of HTTP workers.
        stop_jobs = container.jobs.start_background(settings.job_interval_seconds)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    try:
        if workers == 1:
            uvicorn.run(serving_app(container), **options)
        else:
            # Each worker builds its own container from the same settings: the command line's
            # choices reach it through the environment, which wins over the settings file.
            for name, value in overrides.items():
                if value is not None:
                    os.environ[f"COMMCREDITS_{name.upper()}"] = str(value)
            # A worker builds its container before it answers uvicorn's health check; on a
            # busy machine that takes longer than uvicorn's default of 5 s.
            uvicorn.run(
                f"{__name__}:worker_app",
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=30,
                **options,
            )
    finally:
        if stop_jobs is not None:
            stop_jobs.set()
        container.close()


def worker_app() -> Any:
    """The HTTP application of one ``serve --workers`` process, with its own container (its own
    connections and call-control writer); the database is already migrated by ``serve``."""
    from commcredits import logs

    settings = Settings()
    logs.configure(settings.log_level)
    container = build(settings, upgrade=False)
    application = serving_app(container)
    application.on_shutdown.append(container.close)
    return application


def serving_app(container: Container) -> Any:
    """The HTTP application a serving process runs, whatever the number of workers: the API,
    and its start-up heap set aside once it has started (:func:`settle_heap`)."""
    from commcredits.api.app import create_app

    application = create_app(container)
    application.on_startup.append(settle_heap)
    return application


def settle_heap() -> None:
    """Set what a serving process built before its first request (modules, the application,
    its container and caches) aside from the garbage collector, once collected.

    A full collection walks every object the collector tracks. A worker holds about 170,000
    from start-up, none of them ever garbage, and walking them stopped the worker for about
    100 ms several times a minute under load: every request in flight waited, and the call-
    control p99 was four to five times its median (docs/performance.md). Frozen, they are no
    longer walked; what requests leave behind is collected as before.
    """
    import gc
    import logging

    gc.collect()
    gc.freeze()
    logging.getLogger("commcredits.serve").info(
        "start-up heap set aside from garbage collection: %d objects", gc.get_freeze_count()
    )


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply every pending migration."""
    from commcredits.store import migrate

    container = _container(database_url)
    typer.echo(f"database at revision {migrate.current_revision(container.store.engine)}")
    container.close()


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Show the schema revision without changing anything."""
    from commcredits.store import migrate

    container = build(_settings(database_url=database_url), upgrade=False)
    current = migrate.current_revision(container.store.engine)
    typer.echo(f"current: {current or 'empty'}; latest: {migrate.head_revision()}")
    container.close()


def _issue(kind: str, name: str, database_url: str | None, as_json: bool) -> None:
    container = _container(database_url)
    keys = container.keys
    issued = (
        keys.create_operator_key(name)
        if kind == "operator"
        else keys.create_platform_telephony_key(name)
    )
    container.close()
    if as_json:
        _print_json({"id": issued.key.id, "role": issued.key.role, "key": issued.secret})
        return
    typer.echo(f"{issued.key.role} key {issued.key.id} (shown once, stored hashed):")
    typer.echo(issued.secret)


@keys_app.command("create-operator")
def create_operator(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "operator",
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an operator key, which may do everything."""
    _issue("operator", name, database_url, as_json)


@keys_app.command("create-telephony")
def create_telephony(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "telephony edge",
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a platform telephony key: call control for every organization, nothing else."""
    _issue("telephony", name, database_url, as_json)


def _org_row(org: Any) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "country": org.country,
        "currency": org.currency,
        "billing": org.billing,
        "overage_enabled": org.overage_enabled,
        "created_at": org.created_at.isoformat(),
    }


@orgs_app.command("create")
def orgs_create(
    name: Annotated[str, typer.Option(help="The organization's name.")],
    country: Annotated[str, typer.Option(help="Billing country, ISO 3166-1 alpha-2.")],
    currency: Annotated[str, typer.Option(help="Billing currency, ISO 4217.")],
    billing: Annotated[str, typer.Option(help="prepaid or postpaid")] = "prepaid",
    overage: Annotated[bool, typer.Option(help="Allow postpaid overage.")] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an organization."""
    from commcredits.services.orgs import NewOrganization

    if billing not in ("prepaid", "postpaid"):
        errors.print("[red]error[/red] invalid_value: --billing is prepaid or postpaid")
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        org = container.orgs.create(
            NewOrganization(name, country, currency, billing, overage)  # type: ignore[arg-type]
        )
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    if as_json:
        _print_json(_org_row(org))
    else:
        _table("organization", [_org_row(org)])


@orgs_app.command("list")
def orgs_list(database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """List organizations."""
    container = _container(database_url)
    rows = [_org_row(org) for org in container.orgs.list_orgs(limit=1000)]
    container.close()
    if as_json:
        _print_json(rows)
    else:
        _table("organizations", rows)


@orgs_app.command("show")
def orgs_show(org_id: str, database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Show one organization."""
    container = _container(database_url)
    try:
        org = container.orgs.get(org_id)
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    if as_json:
        _print_json(_org_row(org))
    else:
        _table("organization", [_org_row(org)])


@orgs_app.command("set")
def orgs_set(
    org_id: str,
    mask_numbers: Annotated[
        str | None,
        typer.Option(
            "--mask-numbers",
            help="Number masking in reports: on, off, or default (by billing country).",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an organization's operator settings (number masking in reports)."""
    from commcredits.services.orgs import OrganizationChanges

    if mask_numbers not in (None, "on", "off", "default"):
        errors.print("[red]error[/red] invalid_value: --mask-numbers is on, off or default")
        raise typer.Exit(2)
    container = _container(database_url)
    try:
        org = container.orgs.update(
            org_id,
            OrganizationChanges(mask_numbers=mask_numbers),  # type: ignore[arg-type]
        )
        setting = container.orgs.mask_numbers([org.id]).get(org.id)
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    row = _org_row(org) | {"mask_numbers": {None: "default", True: "on", False: "off"}[setting]}
    if as_json:
        _print_json(row)
    else:
        _table("organization", [row])


def _runs_rows(runs: Any) -> list[dict[str, Any]]:
    return [{"job": r.job, "at": r.at.isoformat(), "processed": r.processed} for r in runs]


@jobs_app.command("run")
def jobs_run(database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Run every job that is due now (expiry sweeps, recharges, mail, ...)."""
    container = _container(database_url)
    runs = container.jobs.run_due()
    container.close()
    if as_json:
        _print_json(_runs_rows(runs))
    else:
        _table("jobs run", _runs_rows(runs))


@clock_app.command("show")
def clock_show(database_url: DatabaseUrl = None, as_json: JsonFlag = False) -> None:
    """Print the service clock."""
    container = _container(database_url)
    now = container.clock.now()
    container.close()
    if as_json:
        _print_json({"mode": container.clock.mode, "now": now.isoformat()})
    else:
        typer.echo(f"{container.clock.mode}: {now.isoformat()}")


@clock_app.command("set")
def clock_set(
    now: Annotated[str, typer.Argument(help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z")],
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Move the simulated clock forward and run every job that falls due on the way."""
    try:
        target = datetime.fromisoformat(now)
    except ValueError:
        errors.print("[red]error[/red] invalid_time: use RFC 3339, e.g. 2027-01-01T00:00:00Z")
        raise typer.Exit(2) from None
    if target.tzinfo is None:
        errors.print("[red]error[/red] invalid_time: the time needs an offset such as Z")
        raise typer.Exit(2)
    container = _container(database_url, clock="simulated")
    try:
        runs = container.jobs.advance_clock(target)
    except CommcreditsError as exc:
        _fail(exc)
    finally:
        container.close()
    if as_json:
        _print_json({"now": target.isoformat(), "jobs": _runs_rows(runs)})
    else:
        typer.echo(f"clock at {target.isoformat()}")
        _table("jobs run", _runs_rows(runs))


# The command groups below register themselves on ``app``.
from commcredits.cli import advice as _advice  # noqa: E402
from commcredits.cli import console as _console  # noqa: E402
from commcredits.cli import credits as _credits  # noqa: E402
from commcredits.cli import demo as _demo  # noqa: E402, F401
from commcredits.cli import directory as _directory  # noqa: E402
from commcredits.cli import edge as _edge  # noqa: E402
from commcredits.cli import rates as _rates  # noqa: E402
from commcredits.cli import reports as _reports  # noqa: E402
from commcredits.cli import tariffplan as _tariffplan  # noqa: E402
from commcredits.cli import usage as _usage  # noqa: E402

__all__ = [
    "_advice",
    "_console",
    "_credits",
    "_directory",
    "_edge",
    "_rates",
    "_reports",
    "_tariffplan",
    "_usage",
    "app",
]

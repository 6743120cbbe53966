"""HTTP: the clock, the job runner and health."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get, post
from litestar.params import JSONBody

from commcredits.api.schemas import ClockOut, JobRunOut, JobsOut, SetClock
from commcredits.api.support import blocking, container_of
from commcredits.jobs.runner import JobRun

AnyRequest = Request[Any, Any, Any]


def _runs(runs: list[JobRun]) -> list[JobRunOut]:
    return [JobRunOut(job=r.job, at=r.at, processed=r.processed) for r in runs]


@get("/system/clock", opt={"area": "platform"}, summary="The service clock")
async def get_clock(request: AnyRequest) -> ClockOut:
    clock = container_of(request).clock
    return ClockOut(mode=clock.mode, now=await blocking(clock.now))


@post(
    "/system/clock",
    opt={"area": "platform"},
    status_code=200,
    summary="Move the simulated clock forward and run every job that fell due",
)
async def set_clock(request: AnyRequest, data: JSONBody[SetClock]) -> ClockOut:
    container = container_of(request)
    runs = await blocking(container.jobs.advance_clock, data.now)
    return ClockOut(
        mode=container.clock.mode, now=await blocking(container.clock.now), jobs=_runs(runs)
    )


@post("/system/jobs/run", opt={"area": "platform"}, status_code=200, summary="Run due jobs now")
async def run_jobs(request: AnyRequest) -> JobsOut:
    return JobsOut(ran=_runs(await blocking(container_of(request).jobs.run_due)))


@get("/healthz", summary="Liveness: the process answers and the database is reachable")
async def health(request: AnyRequest) -> dict[str, str]:
    clock = container_of(request).clock
    await blocking(clock.now)
    return {"status": "ok"}


router = Router(path="/v1", route_handlers=[get_clock, set_clock, run_jobs], tags=["system"])

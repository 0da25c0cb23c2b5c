"""The `/_sim/` controls: how tests and demos steer the simulator (no credentials, JSON in and out).

Counters, faults (of every request, and of the writes alone), schools and their integrations, records,
churn. Every handler gets the one `Simulator` of its app by dependency injection; nothing here is global.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody

from bridge.simulator.changes import RESOURCES as CHANGE_RESOURCES
from bridge.simulator.churn import Churn
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.faults import Faults, FaultSpec
from bridge.simulator.ledger import Calendar
from bridge.simulator.state import School, World
from bridge.simulator.stats import RequestStats
from bridge.simulator.table import NotFound, Record
from bridge.simulator.write_faults import DropSpec, FailSpec, WriteFaults

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Simulator:
    """Everything one simulator instance owns: the world, its faults, its counters and its churn."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        pinned = dt.date.fromisoformat(config.today) if config.today else None
        self.world = World(config.seed, Calendar(pinned))
        self.faults = Faults(config.seed)
        self.writes = WriteFaults()
        self.stats = RequestStats()
        self.churn = Churn(self.world, config.churn, config.churn_skew)
        active = config.schools - config.inactive_schools
        for index in range(config.schools):
            self.world.add_school(
                config.first_school_id + index,
                debtors=config.debtors,
                learners=config.learners,
                api_type_ids=config.api_type_ids,
                activated=index < active,
                finance=config.finance,
            )


Sim = NamedDependency[Simulator]


class NewSchool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    school_id: int | None = None
    name: str | None = None
    learners: NonNegative = 0
    debtors: NonNegative = 0
    authorised: bool = True
    activated: bool = False
    api_type_ids: list[int] | None = None
    finance: bool = True


class ApiTypeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    api_type_id: int | None = None


class AccessBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    denied: bool


class ChurnBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rate: Annotated[float, msgspec.Meta(ge=0.0)]
    skew: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    hours: Literal["constant", "school", "mixed"] | None = None
    """Follow schools' hours over a compressed week (bridge/simulator/churn.py); None keeps the current."""
    week_seconds: Annotated[float, msgspec.Meta(ge=1.0)] | None = None
    week_start_hour: Annotated[float, msgspec.Meta(ge=0.0, lt=168.0)] = 0.0
    """Where the compressed week starts when `hours` is given: hours after Monday 00:00."""


RESOURCES = ("learners", "accountablepersons")


def not_found(_: Request[Any, Any, Any], error: NotFound) -> Response[dict[str, Any]]:
    """A school or record the control named does not exist: 404 in Litestar's error shape."""
    return Response({"status_code": 404, "detail": str(error)}, status_code=404)


def _resource(resource: str) -> str:
    if resource not in RESOURCES:
        raise NotFoundException(f"unknown resource {resource!r}: use one of {', '.join(RESOURCES)}")
    return resource


@get("/_sim/stats", sync_to_thread=False)
def read_stats(sim: Sim) -> dict[str, Any]:
    return sim.stats.summary()


@get("/_sim/requests", sync_to_thread=False)
def read_requests(sim: Sim) -> dict[str, Any]:
    return sim.stats.requests()


@post("/_sim/stats/reset", status_code=200, sync_to_thread=False)
def reset_stats(sim: Sim) -> dict[str, Any]:
    sim.stats.reset()
    return sim.stats.summary()


@get("/_sim/faults", sync_to_thread=False)
def read_faults(sim: Sim) -> dict[str, Any]:
    return sim.faults.describe()


@post("/_sim/faults", status_code=200, sync_to_thread=False)
def set_faults(sim: Sim, data: JSONBody[FaultSpec]) -> dict[str, Any]:
    sim.faults.replace(data)
    return sim.faults.describe()


@delete("/_sim/faults", status_code=200, sync_to_thread=False)
def clear_faults(sim: Sim) -> dict[str, Any]:
    sim.faults.clear()
    return sim.faults.describe()


@get("/_sim/writes", sync_to_thread=False)
def read_write_faults(sim: Sim) -> dict[str, Any]:
    return sim.writes.describe()


@post("/_sim/writes/drop", status_code=200, sync_to_thread=False)
def drop_writes(sim: Sim, data: JSONBody[DropSpec]) -> dict[str, Any]:
    """The next `times` writes that succeed commit, then the connection is dropped without an answer."""
    sim.writes.arm_drop(data)
    return sim.writes.describe()


@post("/_sim/writes/fail", status_code=200, sync_to_thread=False)
def fail_writes(sim: Sim, data: JSONBody[FailSpec]) -> dict[str, Any]:
    """The next `times` writes answer `status` and change nothing."""
    sim.writes.arm_fail(data)
    return sim.writes.describe()


@delete("/_sim/writes", status_code=200, sync_to_thread=False)
def clear_write_faults(sim: Sim) -> dict[str, Any]:
    sim.writes.clear()
    return sim.writes.describe()


@get("/_sim/churn", sync_to_thread=False)
def read_churn(sim: Sim) -> dict[str, Any]:
    return sim.churn.describe()


@post("/_sim/churn", status_code=200, sync_to_thread=False)
def set_churn(sim: Sim, data: JSONBody[ChurnBody]) -> dict[str, Any]:
    sim.churn.set_rate(data.rate, data.skew)
    if data.hours is not None:
        sim.churn.set_hours(data.hours, data.week_seconds, data.week_start_hour)
    return sim.churn.describe()


@get("/_sim/changes", sync_to_thread=False)
def read_changes(
    sim: Sim,
    since: FromQuery[float | None] = None,
    school_id: FromQuery[int | None] = None,
    resource: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """When every change happened, oldest first; filters `since` (Unix seconds, exclusive), `school_id`
    and `resource`."""
    if resource is not None and resource not in CHANGE_RESOURCES:
        raise ValidationException(f"unknown resource {resource!r}: use one of {', '.join(CHANGE_RESOURCES)}")
    log = sim.world.changes
    return {
        "changes": log.since(since, school_id, resource),
        "recorded": log.recorded,
        "kept": len(log.entries),
    }


@post("/_sim/changes/reset", status_code=200, sync_to_thread=False)
def reset_changes(sim: Sim) -> dict[str, Any]:
    sim.world.changes.reset()
    return {"recorded": 0, "kept": 0}


@post("/_sim/schools", sync_to_thread=False)
def add_school(sim: Sim, data: JSONBody[NewSchool]) -> Record:
    world = sim.world
    school_id = (
        data.school_id if data.school_id is not None else world.next_school_id(sim.config.first_school_id)
    )
    api_types = data.api_type_ids if data.api_type_ids is not None else list(sim.config.api_type_ids)
    try:
        school = world.add_school(
            school_id,
            name=data.name,
            debtors=data.debtors,
            learners=data.learners,
            api_type_ids=api_types if data.authorised else (),
            activated=data.activated,
            finance=data.finance,
        )
    except ValueError as error:
        raise HTTPException(status_code=409, detail=str(error)) from error
    return school.summary()


@post("/_sim/schools/{school_id:int}/authorise", status_code=200, sync_to_thread=False)
def authorise_school(sim: Sim, school_id: FromPath[int], data: JSONBody[ApiTypeBody | None] = None) -> Record:
    """The school's admin authorises an API type in d6+ SAMS: it appears in the list, not yet activated."""
    requested = data.api_type_id if data is not None else None
    api_types = [requested] if requested is not None else list(sim.config.api_type_ids)
    school: School = sim.world.school(school_id)
    for api_type_id in api_types:
        school = sim.world.authorise(school_id, api_type_id)
    return school.summary()


@post("/_sim/schools/{school_id:int}/revoke", status_code=200, sync_to_thread=False)
def revoke_school(sim: Sim, school_id: FromPath[int], data: JSONBody[ApiTypeBody | None] = None) -> Record:
    """The school withdraws one API type, or every one when none is named."""
    return sim.world.revoke(school_id, data.api_type_id if data is not None else None).summary()


@post("/_sim/schools/{school_id:int}/access", status_code=200, sync_to_thread=False)
def set_access(sim: Sim, school_id: FromPath[int], data: JSONBody[AccessBody]) -> Record:
    """`{"denied": true}`: the school stays in the integrations list, but its data calls answer 401
    "Client has not authorised access" (as d6 does when its two views disagree); `false` lifts it."""
    school: School = sim.world.school(school_id)
    school.denied = data.denied
    return school.summary()


@get("/_sim/schools/{school_id:int}/{resource:str}", sync_to_thread=False)
def list_records(sim: Sim, school_id: FromPath[int], resource: FromPath[str]) -> dict[str, Any]:
    """Every record, as the API sends it with `all_accounts=1`: the ground truth a test compares with."""
    school = sim.world.school(school_id)
    table = school.learners if _resource(resource) == "learners" else school.debtors
    return {"data": list(table.values())}


@post("/_sim/schools/{school_id:int}/{resource:str}", sync_to_thread=False)
def create_record(
    sim: Sim, school_id: FromPath[int], resource: FromPath[str], data: JSONBody[dict[str, Any]]
) -> Record:
    if _resource(resource) == "learners":
        return sim.world.create_learner(school_id, data)
    return sim.world.create_debtor(school_id, data)


@patch("/_sim/schools/{school_id:int}/{resource:str}/{record_id:int}", sync_to_thread=False)
def update_record(
    sim: Sim,
    school_id: FromPath[int],
    resource: FromPath[str],
    record_id: FromPath[int],
    data: JSONBody[dict[str, Any]],
) -> Record:
    if _resource(resource) == "learners":
        return sim.world.update_learner(school_id, record_id, data)
    return sim.world.update_debtor(school_id, record_id, data)


@delete("/_sim/schools/{school_id:int}/{resource:str}/{record_id:int}", sync_to_thread=False)
def delete_record(
    sim: Sim, school_id: FromPath[int], resource: FromPath[str], record_id: FromPath[int]
) -> None:
    if _resource(resource) == "learners":
        sim.world.remove_learner(school_id, record_id)
    else:
        sim.world.remove_debtor(school_id, record_id)


CONTROL_HANDLERS = [
    read_stats,
    read_requests,
    reset_stats,
    read_faults,
    set_faults,
    clear_faults,
    read_write_faults,
    drop_writes,
    fail_writes,
    clear_write_faults,
    read_churn,
    set_churn,
    read_changes,
    reset_changes,
    add_school,
    authorise_school,
    revoke_school,
    set_access,
    list_records,
    create_record,
    update_record,
    delete_record,
]

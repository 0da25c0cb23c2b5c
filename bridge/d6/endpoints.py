"""The d6 endpoints the bridge uses, with the API version of each (d6 versions per endpoint).

When d6 moves one endpoint to v3, change its `version` here and nothing else.
"""

from __future__ import annotations

import msgspec


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One d6 collection (and its `/{id}` resource when `id_field` is set)."""

    name: str
    version: str
    path: str
    school_scoped: bool
    """Needs the `HTTP-X-SCHOOLID` header."""
    id_field: str | None = None
    """The field that identifies a record; also the `/{id}` resource exists."""

    @property
    def collection(self) -> str:
        """The path under the base URL, e.g. `/v2/finplus/debtmanagement/learners`."""
        return f"/{self.version}{self.path}"

    def resource(self, record_id: int) -> str:
        return f"{self.collection}/{record_id}"

    @property
    def resource_template(self) -> str:
        """The `/{id}` path as a label (for metrics: one series per endpoint, not per record)."""
        return f"{self.collection}/{{id}}"


CLIENT_INTEGRATIONS = Endpoint(
    name="client_integrations", version="v2", path="/settings/clientintegrations", school_scoped=False
)
ACCOUNTABLE_PERSONS = Endpoint(
    name="accountable_persons",
    version="v2",
    path="/finplus/debtmanagement/accountablepersons",
    school_scoped=True,
    id_field="accountable_person_id",
)
LEARNERS = Endpoint(
    name="learners",
    version="v2",
    path="/finplus/debtmanagement/learners",
    school_scoped=True,
    id_field="learner_id",
)
SCHOOLS = Endpoint(
    name="schools",
    version="v2",
    path="/finplus/debtmanagement/schools",
    school_scoped=False,
    id_field="school_id",
)

ENDPOINTS: dict[str, Endpoint] = {
    endpoint.name: endpoint for endpoint in (CLIENT_INTEGRATIONS, ACCOUNTABLE_PERSONS, LEARNERS, SCHOOLS)
}

ALIASES: dict[str, str] = {
    "client_integrations": "client_integrations",
    "clientintegrations": "client_integrations",
    "integrations": "client_integrations",
    "accountable_persons": "accountable_persons",
    "accountablepersons": "accountable_persons",
    "accountable_person": "accountable_persons",
    "debtors": "accountable_persons",
    "debtor": "accountable_persons",
    "learners": "learners",
    "learner": "learners",
    "schools": "schools",
    "school": "schools",
}


def endpoint_for(resource: str) -> Endpoint:
    """The endpoint of a resource name: `learners`/`learner`, `accountable_persons`/`debtor`, ..."""
    try:
        return ENDPOINTS[ALIASES[resource]]
    except KeyError:
        known = ", ".join(sorted(ENDPOINTS))
        raise ValueError(f"unknown d6 resource {resource!r}; known: {known}") from None

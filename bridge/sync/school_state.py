"""A school's state, decided once for `GET /v1/schools` and the `schools` gauge (docs/operations.md#metrics).

`active`: it has an activated integration, so it is polled; `revoked`: no (school, API type) pair is left
in the client integrations list; `denied`: still listed, but d6 refuses its data; `inactive`: authorised,
not activated. The gauge splits `active` further: `failing` is an active school whose last poll failed.
"""

from __future__ import annotations

from typing import Final, Literal

SchoolState = Literal["active", "failing", "inactive", "denied", "revoked"]

SCHOOL_STATES: Final[tuple[SchoolState, ...]] = ("active", "failing", "inactive", "denied", "revoked")
"""Every state, in the order the gauge lists them."""


def school_state(*, active: bool, listed: bool, denied: bool, failing: bool = False) -> SchoolState:
    """The state of a school: `active` among the active schools (`failing` when asked and its last poll
    failed), else `revoked` without a pair in the list, else `denied` while d6 refuses it, else `inactive`."""
    if active:
        return "failing" if failing else "active"
    if not listed:
        return "revoked"
    return "denied" if denied else "inactive"

"""The simulator's settings, one typed object (re-exported by `bridge.simulator.app`)."""

from __future__ import annotations

from typing import Literal

import msgspec


class SimulatorConfig(msgspec.Struct, kw_only=True):
    """How big the simulated d6 is and how it behaves; every field has a default that works out of the box."""

    schools: int = 5
    learners: int = 1000
    """Learners per seeded school."""
    debtors: int = 800
    """Accountable persons (debtors) per seeded school."""
    seed: int = 1
    churn: float = 0.0
    """Changes per second across all schools: learners and debtors, and Finance+ records where a school's
    books are in use."""
    churn_skew: float = 0.0
    """How unevenly the churn falls on schools: the school of rank r (in id order) gets a share
    proportional to 1/r**churn_skew; 0 spreads it evenly."""
    username: str = "sandbox"
    password: str = "sandbox"  # noqa: S105 - the documented sandbox credential, not a secret
    max_allowed_limit: int = 50
    default_limit: int = 10
    first_school_id: int = 1000
    inactive_schools: int = 0
    """How many seeded schools (the last ones) are authorised but not yet activated by the integrator."""
    api_type_ids: tuple[int, ...] = (8,)
    """The API types every seeded school has authorised."""
    patch_only: bool = False
    """POST to change-state answers 405, so a client's PATCH fallback can be tested."""
    finance: bool = True
    """Seeded schools have Finance+ books (generated on first use: transactions, promises, notes)."""
    transactions_shape: Literal["grouped", "flat"] = "grouped"
    """Financial transactions grouped under a family object (what d6's text describes) or as flat rows."""
    today: str | None = None
    """Pin the schools' calendar to this `YYYY-MM-DD` date (reproducible books); None follows the clock."""

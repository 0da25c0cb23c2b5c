"""The simulator's settings, one typed object (re-exported by `bridge.simulator.app`)."""

from __future__ import annotations

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
    """Changes per second across all schools (updates, creations and removals of learners and debtors)."""
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

"""The d6 Integrate client: HTTP, pagination, error mapping, the shared request budget, records."""

from bridge.d6.budget import Budget, LocalBudget, NoBudget, RedisBudget
from bridge.d6.client import D6Client
from bridge.d6.pagination import Page
from bridge.d6.records import canonical_bytes, integration_key, normalise, record_hash, record_id

__all__ = [
    "Budget",
    "D6Client",
    "LocalBudget",
    "NoBudget",
    "Page",
    "RedisBudget",
    "canonical_bytes",
    "integration_key",
    "normalise",
    "record_hash",
    "record_id",
]

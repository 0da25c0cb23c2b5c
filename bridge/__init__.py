"""d6 bridge: signed webhooks for the poll-only d6 Integrate API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("d6-bridge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

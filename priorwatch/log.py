"""Logging without PHI: log UIDs' hashes and database ids, never names, IDs or dates of birth."""

from __future__ import annotations

import hashlib
import logging
import os


def phi_safe(value: str | None) -> str:
    """A short stable token for an identifier, so logs can be correlated without PHI."""
    if not value:
        return "-"
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def configure_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("PRIORWATCH_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pynetdicom logs dataset contents (PHI) at DEBUG; keep it at WARNING.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)

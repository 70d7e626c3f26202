"""PriorWatch shared core: settings, schema and sessions, the result vocabulary, logging."""

from priorwatch.db import get_engine, init_db, session_scope
from priorwatch.settings import Settings, get_settings
from priorwatch.vocabulary import (
    Change,
    ComparisonResult,
    Evidence,
    FindingResult,
    FindingType,
    GuardMark,
    Side,
    Zone,
)

__all__ = [
    "Change",
    "ComparisonResult",
    "Evidence",
    "FindingResult",
    "FindingType",
    "GuardMark",
    "Settings",
    "Side",
    "Zone",
    "get_engine",
    "get_settings",
    "init_db",
    "session_scope",
]

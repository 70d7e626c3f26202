"""PriorWatch shared core: settings, schema and sessions, the result vocabulary, logging, and
the rules two rooms must apply alike (so each has one copy, here, the lowest room both import).

Public API (imported here): `Settings`, `get_settings`; `get_engine`, `init_db`,
`session_scope`; the vocabulary (`FindingType`, `Change`, `Side`, `Zone`, `FindingResult`,
`ComparisonResult`, `Evidence`, `GuardMark`). Public modules:

- `priorwatch.models`: the database schema; `priorwatch.migrate`: Alembic migrations
  (run by `priorwatch db upgrade|current`); `priorwatch.cli`: the `priorwatch` command
- `priorwatch.vocabulary.is_urgent`: the urgency rule
- `priorwatch.instances`: which instance is a study's image (`frontal_instance`, `is_sr_class`)
- `priorwatch.sentences`: the report sentence for a finding (the AI draft's and the dashboard's)
- `priorwatch.outbox`: the delivery idempotency key; `priorwatch.identity`: same patient or not
- `priorwatch.queue` (Celery configuration), `priorwatch.metrics` (health and metrics HTTP),
  `priorwatch.export`, `priorwatch.quarantine`, `priorwatch.imagestats`, `priorwatch.limits`,
  `priorwatch.log`
"""

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

"""String lengths at the database boundary: PostgreSQL refuses a value longer than its
VARCHAR(n) (failing the whole transaction), SQLite silently keeps it. Free text that an
engine or a peer produces (versions, model names) is cut to its column here, visibly, so both
databases store the same thing and a long version string never costs a result."""

from __future__ import annotations

import logging

from sqlalchemy import String, inspect
from sqlmodel import SQLModel

log = logging.getLogger(__name__)

__all__ = ["MARK", "column_limits", "fit_strings"]

MARK = "…"  # ends a value that was cut to fit its column


def column_limits(model: type[SQLModel]) -> dict[str, int]:
    """{attribute: maximum length} of the model's length-limited string columns."""
    out: dict[str, int] = {}
    for col in inspect(model).columns:
        t = getattr(col.type, "impl_instance", col.type)  # sqlmodel's AutoString wraps a String
        length = getattr(t, "length", None) or getattr(col.type, "length", None)
        if isinstance(t, String) and length:
            out[col.key] = int(length)
    return out


def fit_strings(obj: SQLModel) -> list[str]:
    """Cut every str attribute longer than its column to fit (ending in MARK); returns the names
    cut. Logged by table, column and lengths only (never the value: it may carry PHI)."""
    cut: list[str] = []
    for name, limit in column_limits(type(obj)).items():
        value = getattr(obj, name, None)
        if isinstance(value, str) and len(value) > limit:
            setattr(obj, name, value[: limit - len(MARK)] + MARK)
            cut.append(name)
            log.warning("%s.%s: %d characters cut to its %d", type(obj).__tablename__, name, len(value), limit)
    return cut

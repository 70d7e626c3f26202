"""The outbox's shared rules: the idempotency key a delivery row carries.

The worker writes result rows (`sr`, `webhook`) and the dashboard the signed report's row
(`final_sr`); a receiver de-duplicates on this key, so both must spell it the same.
"""

from __future__ import annotations

__all__ = ["FINAL_SR_KIND", "idempotency_key"]

FINAL_SR_KIND = "final_sr"  # the signed report's delivery, sent by `workers.final_sr`


def idempotency_key(comparison_id: int, kind: str) -> str:
    """One key per (comparison, delivery kind); migration 0014 back-filled rows with this form."""
    return f"priorwatch-{comparison_id}-{kind}"

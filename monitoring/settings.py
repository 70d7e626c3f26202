"""Monitoring settings: `PRIORWATCH_MONITORING_*` environment variables (or the TOML file
named by `PRIORWATCH_CONFIG`, table-less keys with the `monitoring_` prefix dropped)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIORWATCH_MONITORING_", extra="ignore")

    # Windows: current = [as_of - current_days, as_of); reference = the reference_days before it.
    current_days: int = 7
    reference_days: int = 28
    schedule_s: float = 3600.0  # Celery beat period of "monitoring.snapshot"

    # Drift: per-column null distribution from bootstrap splits of the reference window.
    drift_bootstrap: int = 20
    drift_z_clip: float = 10.0
    drift_score_threshold: float = 2.0  # unified concordance drift score (z units) that alerts
    evidently_html: bool = True  # keep the Evidently HTML report of each snapshot

    # Revision-rate rise: current minus reference, and significant at alpha.
    revision_rise_threshold: float = 0.08
    # Subgroups: minimum count in the subgroup and the rest; an absolute gap and significance.
    min_count: int = 30
    subgroup_gap_threshold: float = 0.10
    alpha: float = 0.01  # two-sided, per comparison (Bonferroni over subgroups applied on top)

    # Uncertain findings count as positive in agreement metrics ("U-ones") unless False.
    uncertain_as_positive: bool = True

    # Alerts
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    realert_days: int = 7  # an open alert of the same kind and subject is not re-sent within this

    # HL7 / MLLP listener for signed reports (started by `priorwatch serve` and `hl7-listen`)
    hl7_enabled: bool = True
    hl7_host: str = "127.0.0.1"
    hl7_port: int = 2575
    hl7_max_message_bytes: int = 1_000_000
    hl7_read_timeout_s: float = 30.0


@lru_cache(maxsize=1)
def get_monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings()

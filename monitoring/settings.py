"""Monitoring settings: `PRIORWATCH_MONITORING_*` environment variables (or the TOML file
named by `PRIORWATCH_CONFIG`, table-less keys with the `monitoring_` prefix dropped).
Every threshold of the monitoring room is here, each with the reason for its value."""

from __future__ import annotations

import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def system_zone() -> str:
    """The machine's IANA zone (TZ, else /etc/localtime's target), else UTC: a server in the hospital
    usually runs on the site's clock, which is what its scanners write into DICOM."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz or tz == "UTC":
        return tz
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIORWATCH_MONITORING_", extra="ignore")

    # Time. DICOM study times are the site's wall clock; they are read in this zone (or the
    # institution's own, below) and everything is compared and stored in UTC.
    timezone: str = Field(default_factory=system_zone)
    site_timezones: dict[str, str] = {}  # institution name -> IANA zone, where sites differ

    # Windows: current = [as_of - current_days, as_of); rolling reference = the reference_days before it.
    current_days: int = 7  # a week smooths weekday mix and is the alerting promise (an event alerts within 7 days)
    reference_days: int = 28  # four weeks: enough studies for stable per-site rates
    # Fixed reference: a chosen validation period [baseline_start, baseline_end) in UTC. A rolling
    # reference absorbs a persisting change within weeks; the fixed one keeps showing it.
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    schedule_s: float = 3600.0  # Celery beat period of "monitoring.snapshot"

    # Drift: Evidently 0.7 per-column tests (Kolmogorov-Smirnov for numbers, chi-square for categories),
    # each scope (global, per site, per scanner) against the references.
    drift_threshold: float = 1e-6  # p-value at or under which a column drifts: ~17 columns x ~6 scopes x a
    # snapshot an hour is ~900k tests a year, so a per-test 1e-6 keeps chance alarms near one a year
    drift_ratio_alert: float = 1.0  # log p / log threshold needed to alert (1: at the threshold)
    drift_min_count: int = 40  # fewer current studies in a scope than this: not tested (too few to tell)
    evidently_html: bool = True  # keep an Evidently HTML report of each snapshot
    html_keep_days: int = 14  # older HTML reports are deleted (4-5 MB each)

    # Revisions: significant finding-level discordance (monitoring.concordance).
    revision_rise_threshold: float = 0.08  # current minus reference rate; below this a rise is not actionable
    min_count: int = 30  # minimum signed studies in a window / subgroup and its rest for a rate to be tested
    subgroup_gap_threshold: float = 0.10  # absolute gap that would change a deployment decision
    alpha: float = 0.01  # two-sided, per comparison (Bonferroni over subgroups applied on top)
    uncertain_as_positive: bool = True  # hedged final findings count as stated ("U-ones")

    # Calibration of the engine's confidence per finding type (issue 30): does a 0.9 mean right 9 times in 10?
    # A claim is right when the final findings state its type. Reliability is judged against the baseline's
    # own reliability (a Platt map fitted on the baseline's claims), so an engine that was never perfectly
    # calibrated alerts only when its confidence means less (or more) than it did.
    calibration_bins: int = 10  # equal-width confidence bins for ECE and the reliability diagram (the usual 10)
    calibration_recent_days: int = 3  # a confidence change hits every draft of a type at once: tested on the
    # last 3 days as well as the whole current window, so it alerts within 3 days instead of being diluted by 7
    calibration_gap_threshold: float = 0.10  # claims right 10 points less (or more) often than the baseline
    # says they should at their confidence: enough to change how a reader weighs the number
    calibration_min_count: int = 10  # claims of a type in a tested window; fewer cannot show a 10-point gap
    ppv_drop_threshold: float = 0.10  # a type's PPV (claims right) falling 10 points below the baseline's
    calibration_bootstrap: int = 200  # resamples for the ECE interval: the interval's ends move < 0.01 beyond this
    recalibration_min_labels: int = 30  # claims of a type needed to fit its map; fewer keep the raw confidence
    # (two parameters on fewer than ~30 outcomes overfit; the ridge below keeps small fits near identity)
    recalibration_ridge: float = 1.0  # L2 pull of (a, b) towards the identity map (1, 0), in log-loss units

    # Report turnaround: signed minus study time.
    report_delay_alert_h: float = 24.0  # median delay in the current window above this alerts
    report_delay_min_count: int = 20  # signed reports needed to judge the median

    # Alerts
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    resolve_quiet_days: float = 3.0  # a condition must stay clear this long before its alert resolves: a
    # borderline test dipping under its threshold for a day must not close and reopen a standing problem
    # kind -> (severity, route). Routing says who acts: QA for accuracy, engineering for inputs, the
    # clinical lead for turnaround.
    alert_routes: dict[str, tuple[str, str]] = {
        "revision_rise": ("critical", "qa"),
        "subgroup_gap": ("critical", "qa"),
        "drift": ("warning", "engineering"),
        "new_site": ("warning", "engineering"),
        "new_scanner": ("warning", "engineering"),
        "model_version": ("warning", "qa"),
        "report_delay": ("warning", "clinical_lead"),
        "calibration": ("critical", "qa"),
        "ppv_drop": ("critical", "qa"),
    }

    # HL7 / MLLP listener for signed reports (started by `priorwatch serve` and `hl7-listen`)
    hl7_enabled: bool = True
    hl7_host: str = "127.0.0.1"
    hl7_port: int = 2575
    hl7_max_message_bytes: int = 1_000_000
    hl7_read_timeout_s: float = 30.0
    hl7_default_charset: str = "utf-8"  # when MSH-18 is empty (HL7 says ASCII; UTF-8 is its superset)
    # MLLP over TLS (PEM files): with a cert and key the listener speaks TLS 1.2+ only (reports carry
    # PHI across the hospital network); with a CA it also requires each sender's certificate signed
    # by it (the RIS proves who it is, as DICOM peers do on the node's port).
    hl7_tls_cert: Path | None = None
    hl7_tls_key: Path | None = None
    hl7_tls_ca: Path | None = None


    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/Berlin)") from None
        return v

    @field_validator("site_timezones")
    @classmethod
    def _known_zones(cls, v: dict[str, str]) -> dict[str, str]:
        for zone in v.values():
            cls._known_zone(zone)
        return v


@lru_cache(maxsize=1)
def get_monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings()

"""Monitoring: report labeler, finding-level concordance (the revision measure), drift per site
and scanner, subgroup performance, alerts with a lifecycle, and signed-report intake (HL7
ORU^R01 over MLLP). Public API:

- `label_report(text, has_prior=None) -> ReportLabels`
- `compare_study(ai_claims, final_claims, ai_urgent, final_urgent) -> StudyConcordance`, `Claim`
- `run_snapshot(settings=None, ms=None, as_of=None) -> dict` (compute and store a snapshot now)
- `latest_snapshot(session) / list_alerts(session)`: the read side for the dashboard
- `MLLPListener(settings, ms).start() / .stop()`: the HL7 listener
- `file_report(session, study_id, text, ...)`: file a signed report from the review page
- `MonitoringSettings`, `get_monitoring_settings`
"""

from __future__ import annotations

from typing import Any

from monitoring.concordance import Claim, StudyConcordance, compare_study
from monitoring.labeler import Label, ReportLabels, label_report
from monitoring.settings import MonitoringSettings, get_monitoring_settings


def run_snapshot(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from monitoring.snapshot import run_snapshot as _run

    return _run(*args, **kwargs)


def MLLPListener(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a lazy class accessor
    from monitoring.hl7 import MLLPListener as _L

    return _L(*args, **kwargs)


def file_report(*args: Any, **kwargs: Any) -> Any:
    from monitoring.hl7 import file_report as _f

    return _f(*args, **kwargs)


def latest_snapshot(session: Any) -> Any:
    from monitoring.read import latest_snapshot as _l

    return _l(session)


def list_alerts(session: Any, limit: int = 200) -> Any:
    from monitoring.read import list_alerts as _a

    return _a(session, limit)


__all__ = ["Claim", "StudyConcordance", "compare_study", "Label", "ReportLabels", "label_report", "MonitoringSettings", "get_monitoring_settings", "run_snapshot",
           "MLLPListener", "file_report", "latest_snapshot", "list_alerts"]

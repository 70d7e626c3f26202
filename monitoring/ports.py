"""The ports monitoring's listeners take under `priorwatch serve` (entry point `priorwatch.ports`),
so that serve checks them before it starts anything (`priorwatch.ports`)."""

from __future__ import annotations

from priorwatch.ports import ListenPort
from priorwatch.settings import Settings

from monitoring.settings import get_monitoring_settings


def serve_ports(settings: Settings) -> list[ListenPort]:
    """The HL7/MLLP listener's port, when HL7 intake is on (`monitoring.hl7.start_service`)."""
    ms = get_monitoring_settings()
    if not ms.hl7_enabled:
        return []
    return [ListenPort("HL7/MLLP listener", "PRIORWATCH_MONITORING_HL7_PORT", ms.hl7_host, ms.hl7_port)]

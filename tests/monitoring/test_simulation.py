"""The proof, small: simulated scenarios alert after their event, within 7 days, and not before;
wording-only editing raises no revision alert. (`priorwatch simulate` runs all six at full size.)"""

from datetime import date, timedelta

import pytest

from monitoring import simulate
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine

EVENT = 42


@pytest.mark.parametrize("scenario", ["model_version", "wording_only"])
def test_scenario_alerts_within_a_week_of_its_event_and_never_before(pw_settings, scenario):
    res = simulate.run(get_engine(pw_settings), MonitoringSettings(evidently_html=False), scenario,
                       start=date(2025, 1, 6), days=EVENT + 6, per_day=30, event_day=EVENT,
                       days_list=[EVENT - 2, EVENT + 3, EVENT + 6], echo=lambda s: None)
    assert res.before_event() == []
    for kind, subject in simulate.SCENARIOS[scenario].expect:
        t = res.first(kind, subject)
        assert t is not None and res.event < t <= res.event + timedelta(days=7), res.opened
    assert res.passed(), res.opened
    if scenario == "wording_only":
        assert res.opened == []  # rewording changes no finding: nothing to alert on
        assert max(r for _, r in res.revision_rates) < 0.15

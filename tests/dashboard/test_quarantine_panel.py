"""The admin sees what the node quarantined (another patient's instance in a held study) and
marks it dealt with; the action is audited and the item leaves the list."""

from __future__ import annotations

from sqlmodel import select

from priorwatch.db import session_scope
from priorwatch.models import QuarantinedInstance, Study

from tests.dashboard.test_app_pages import app_as, audit_rows, button


def test_admin_sees_and_resolves_a_quarantined_instance(seeded):
    with session_scope(seeded.settings) as s:
        study = s.exec(select(Study)).first()
        s.add(QuarantinedInstance(sop_instance_uid="1.2.3.4", study_uid=study.study_uid, held_study_id=study.id,
                                  calling_ae="CR01", role="incoming", differs="ID,name", path="/nowhere", size=1))
    at = app_as("root", role="admin", page="Users")
    table = at.dataframe[1].value
    assert table["From AE"].tolist() == ["CR01"]
    assert table["Differs"].tolist() == ["ID, name"]
    assert "held for another patient" in at.warning[0].value

    button(at, "Mark dealt with").click()
    at.run()

    assert "No instance is held in quarantine." in [c.value for c in at.caption]
    [row] = audit_rows(seeded.settings, "quarantine_resolved")
    assert (row.user, row.study_id) == ("root", study.id)

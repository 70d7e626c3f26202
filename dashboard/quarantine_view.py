"""The admin's view of the node's quarantine: instances refused because their study is held
for another patient. Shown on the Users page (the admin's operations page); resolving one is
audited and leaves the file in the quarantine folder for the record."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import commands


def quarantine_panel(user: dict[str, Any]) -> None:
    st.subheader("Quarantine")
    items = commands.quarantine_items()
    if not items:
        st.caption("No instance is held in quarantine.")
        return
    st.warning(f"{len(items)} instance(s) refused: their study is held for another patient. "
               "Check the sending modality's worklist and UID generation before re-sending.")
    st.dataframe(
        [{"Id": q.id, "Received (UTC)": q.received_at.strftime("%Y-%m-%d %H:%M"), "From AE": q.calling_ae or "-",
          "Held study id": q.held_study_id, "Differs": q.differs.replace(",", ", "), "Attempts": q.attempts}
         for q in items],
        hide_index=True,
    )
    choice = st.selectbox("Quarantined instance", [q.id for q in items], key="quarantine_pick")
    if st.button("Mark dealt with", key="quarantine_resolve"):
        commands.resolve_quarantine(int(choice), user["username"])
        st.rerun()

"""The Streamlit dashboard: worklist, study review (claim, accept / edit / reject, sign), monitoring.

Public API: `dashboard.cli.register` (CLI commands); `dashboard.commands` (what the pages do:
login, sessions, claims, drafts, the accept / edit / reject rule, sign, users; no Streamlit);
`dashboard.queries` (worklist, study detail, claims, drafts, audit: SQL, no Streamlit);
`dashboard.signoff` (the signed text and the one decision per comparison); `dashboard.auth`
(users and password hashing); `dashboard.security` (session cookies and login throttling) and
`dashboard.images` (server-side window/level, markers and overlays).

The pages draw and call `dashboard.commands`: `dashboard/app.py` runs `dashboard.views.main`
(login, navigation, users), `dashboard.worklist_view`, `dashboard.review_view`,
`dashboard.monitoring_view`; their HTML/JS/CSS are files in `dashboard/static/`. The server
that adds the session-only image and cookie routes is `dashboard/server.py`.
"""

"""The Streamlit dashboard: worklist, study review (claim, accept / edit / reject, sign), monitoring.

Public API: `dashboard.cli.register` (CLI commands), `dashboard.queries` (worklist, claims,
sign-off and drafts without Streamlit), `dashboard.auth` (users and password hashing),
`dashboard.security` (session cookies and login throttling) and `dashboard.images`
(server-side window/level, markers and overlays). The pages are `dashboard/app.py`; the server
that adds the session-only image and cookie routes is `dashboard/server.py`.
"""

"""The Streamlit dashboard: worklist, study review (accept / edit / reject), monitoring.

Public API: `dashboard.cli.register` (CLI commands), `dashboard.queries` (worklist and
review logic without Streamlit), `dashboard.auth` (users and password hashing) and
`dashboard.images` (window/level and overlays). The app itself is `dashboard/app.py`.
"""

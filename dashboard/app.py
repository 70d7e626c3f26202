"""PriorWatch dashboard: the Streamlit entry (`streamlit run dashboard/app.py`).

Login, then role-based navigation: radiologists get the worklist and the review page, QA
gets monitoring, admins get everything plus user management. The pages are
`dashboard.views` (entry), `worklist_view` and `review_view`; what they do is `dashboard.commands`.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:  # run as a script by `streamlit run`: make the repository importable if not installed
    import dashboard  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.views import main  # noqa: E402

main()

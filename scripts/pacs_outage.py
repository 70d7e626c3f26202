"""The PACS down for 5 minutes with 40 new studies (issue 14's fault run; the suite runs a
seconds-long version in tests/pacs/test_pacs_faults.py). Prints the figures as JSON.

    .venv/bin/python scripts/pacs_outage.py [--studies 40] [--outage-s 300] [--retrieve c-get]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pacs.outage import run_outage  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--studies", type=int, default=40)
    ap.add_argument("--outage-s", type=float, default=300.0)
    ap.add_argument("--retrieve", default="c-get", choices=["c-get", "c-move"])
    ap.add_argument("--retry-max-s", type=float, default=30.0)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-outage-", dir=args.dir) as tmp:
        fig = run_outage(Path(tmp), args.studies, args.outage_s, retrieve=args.retrieve,
                         retry_max_s=args.retry_max_s, finish_timeout_s=1800)
    print(json.dumps(fig, indent=1))
    ok = fig["done"] == args.studies and fig["priors_right"] == args.studies and fig["results"] == args.studies
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

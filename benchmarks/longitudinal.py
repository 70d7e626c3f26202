"""Longitudinal benchmark of the registration engine (thin wrapper of `comparison.benchmark`).

The same as `priorwatch benchmark`: labelled longitudinal pairs from pydicom-data's real
chest CR under pose / exposure / noise / matrix nuisance, scored per finding type; or, with
`--score RESULTS --labels LABELS`, any results file against an MS-CXR-T layout label set.

    .venv/bin/python benchmarks/longitudinal.py --n 1 --seed 2024 --out artifacts/longitudinal.json
"""

from __future__ import annotations

from comparison.benchmark import cases, main, run, summarise  # noqa: F401  (re-exported)

if __name__ == "__main__":
    main()

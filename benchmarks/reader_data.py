"""Moved to `modeldev.reader_data` (issue 28: training out of the shipped packages).

Kept as a name only because `tests/comparison/test_fluid.py` probes the engine on train-split
pairs (`train_specs`); build training pairs with `python -m modeldev.reader_data`.
"""

from __future__ import annotations

from modeldev.reader_data import train_specs

__all__ = ["train_specs"]

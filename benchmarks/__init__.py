"""Benchmarks that print ratios against a peer measured in the same run (never a bare time).

Each module is a script (`python -m benchmarks.<name>`); none is imported by the product. They
import only the rooms' public names (`tests/test_import_boundaries.py`).
"""

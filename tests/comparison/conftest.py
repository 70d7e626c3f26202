from __future__ import annotations

from pathlib import Path

import pytest

from comparison import synthetic


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pairs")


@pytest.fixture(scope="session")
def demo(pairs_dir: Path) -> list[synthetic.PairSpec]:
    return synthetic.demo_cases(pairs_dir / "demo")

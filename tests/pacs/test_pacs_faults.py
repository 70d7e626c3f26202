"""PACS faults (issue 14): a permanent rejection is a configuration error with the PACS's own
reason; an unreachable PACS makes the job wait (capped back-off, a window); an outage through
the whole runtime ends with every study compared with its prior once the PACS is back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from dicom_node.pacs import PacsConfig, PacsConfigError
from dicom_node.query import find_studies
from dicom_node.retrieve import CGetRetriever
from priorwatch.models import Study, utcnow
from priorwatch.settings import Settings
from tests.conftest import free_port, require_binary
from tests.pacs.conftest import NODE_AE
from tests.pacs.outage import run_outage
from tests.peers import DcmQrScp
from workers.errors import PermanentError, WaitingForPacs
from workers.fetch import fetch_priors


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DcmQrScp]:
    require_binary("dcmqrscp")
    with DcmQrScp(tmp_path_factory.mktemp("dq") / "pacs") as d:
        yield d


def _current() -> Study:
    return Study(study_uid="2.25.1", patient_id="PW-F-1", issuer="HOSP-A", modality="CR", body_part="CHEST",
                 study_date=date(2025, 6, 1))


def _settings(tmp: Path, **kw: object) -> Settings:
    s = Settings(data_dir=tmp / "data", ae_title=NODE_AE, dicom_port=free_port(), **kw)  # type: ignore[arg-type]
    s.ensure_dirs()
    return s


def test_called_ae_not_recognised_is_a_configuration_error_with_the_pacs_reason(dcmqrscp: DcmQrScp,
                                                                                tmp_path: Path) -> None:
    wrong = PacsConfig(ae_title="NOSUCHAE", port=dcmqrscp.port, timeout_s=5)
    with pytest.raises(PacsConfigError, match="Rejected Permanent.*Called AE title not recognised"):
        find_studies(wrong, "PW-F-1", "HOSP-A", NODE_AE)
    with pytest.raises(PacsConfigError, match="Called AE title not recognised"):
        CGetRetriever().retrieve(wrong, "1.2.3", lambda b: 0, NODE_AE)
    with pytest.raises(PermanentError, match="PACS configuration error") as info:
        fetch_priors(_current(), wrong, _settings(tmp_path), lambda b: 0)
    assert not isinstance(info.value, WaitingForPacs)


def test_unreachable_pacs_makes_the_job_wait_with_capped_backoff_then_gives_up_after_the_window(tmp_path: Path) -> None:
    down = PacsConfig(ae_title="DOWN", port=free_port(), timeout_s=1)
    settings = _settings(tmp_path, task_retry_backoff_s=2.0, pacs_retry_max_s=300.0, pacs_wait_window_s=24 * 3600.0)
    delays = []
    for waited in (timedelta(0), timedelta(minutes=2), timedelta(hours=3)):
        with pytest.raises(WaitingForPacs) as info:
            fetch_priors(_current(), down, settings, lambda b: 0, waiting_since=utcnow() - waited)
        assert not info.value.window_passed
        delays.append(info.value.retry_in_s)
    assert delays[0] == 2.0 and 2.0 < delays[1] < 300.0 and delays[2] == 300.0  # grows, capped
    with pytest.raises(WaitingForPacs) as info:
        fetch_priors(_current(), down, settings, lambda b: 0, waiting_since=utcnow() - timedelta(hours=25))
    assert info.value.window_passed and "wait window" in str(info.value)


@pytest.mark.triton
def test_pacs_outage_jobs_wait_and_find_their_priors_when_it_returns(tmp_path: Path) -> None:
    require_binary("dcmqrscp")
    fig = run_outage(tmp_path, n_studies=3, outage_s=6.0, retry_max_s=1.0, finish_timeout_s=120)
    print("\nPACS outage (suite):", fig)
    assert fig["jobs_during_outage"] == 3 and fig["done_during_outage"] == 0 and fig["failed_during_outage"] == 0
    assert fig["waiting_during_outage"] == 3  # each says why it waits
    assert fig["done"] == 3 and fig["failed"] == 0
    assert fig["studies_with_one_result"] == 3 and fig["results"] == 3
    assert fig["priors_right"] == 3 and fig["no_prior"] == 0

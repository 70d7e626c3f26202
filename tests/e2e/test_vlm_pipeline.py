"""The VLM engine through the whole pipeline: a tiny random LLaVA built from configs is served by
the real local Triton beside the registration model; the worker gets a guarded draft. Asserts on
plumbing and guard behaviour, never on the words random weights write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from comparison import synthetic
from comparison.vlm import build_tiny_llava
from dicom_node import send_files
from priorwatch.db import session_scope
from priorwatch.models import Comparison, Finding, JobState
from priorwatch.vocabulary import Change, FindingType, Side, Zone
from tests.e2e.test_pipeline_end_to_end import MODALITY, _settings, _wait_jobs, pg_url  # noqa: F401 (fixture)
from workers.runtime import Runtime


@pytest.mark.triton
def test_vlm_draft_is_guarded_by_registration_evidence(tmp_path: Path) -> None:
    _vlm_pipeline(tmp_path)


@pytest.mark.triton
@pytest.mark.server
def test_vlm_result_is_stored_on_postgresql_and_redis(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL enforces VARCHAR lengths that SQLite ignores: the guarded VLM's version string
    (both engines') is longer than the 32 characters the column once had."""
    comp = _vlm_pipeline(tmp_path, database_url=pg_url, broker_url="redis://127.0.0.1:6379/4")
    assert len(comp.engine_version) > 32


def _vlm_pipeline(tmp_path: Path, **kw: object) -> Comparison:
    model_dir = build_tiny_llava(tmp_path / "tiny-llava")
    settings = _settings(tmp_path / "data", engine="vlm", vlm_model_dir=model_dir, vlm_max_new_tokens=24, **kw)
    pair = synthetic.make_pair(tmp_path / "in", "PW-VLM-1", lesion=FindingType.pneumothorax, change=Change.new,
                               side=Side.left, zone=Zone.upper, seed=3)
    with Runtime(settings) as rt:
        port = rt.settings.dicom_port
        assert send_files(pair.prior_paths, "127.0.0.1", port, settings.ae_title, calling_ae="PW_ARCHIVE") == [0]
        assert send_files(pair.current_paths, "127.0.0.1", port, settings.ae_title, calling_ae=MODALITY) == [0]
        jobs = _wait_jobs(rt.settings, 1, timeout=300)
    assert jobs[0].state == JobState.done, jobs[0].error
    with session_scope(settings) as s:
        comp = s.exec(select(Comparison)).one()
        findings = s.exec(select(Finding).where(Finding.comparison_id == comp.id)).all()
    assert comp.engine == "vlm" and not comp.fallback, "the VLM answered through Triton"
    assert "registration" in comp.engine_version, "both engines' versions are stored"
    assert comp.model == "tiny-llava"
    assert comp.draft_text  # a draft exists, structured or not
    # The registration evidence shows a new left pneumothorax: the guard never lets an urgent finding
    # go missing, whatever the random model wrote.
    assert comp.urgent
    assert any(f.finding == "pneumothorax" and f.urgent for f in findings)
    assert all(f.guard in ("supported", "unsupported", "unverified") for f in findings)
    assert json.loads(comp.result_json)["engine"] == "vlm"
    return comp

"""The history carries forward the most recent prior's own stored result (issue 29): the worker reads
its latest version from the database; a prior with no result, or one that cannot be read, carries nothing."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from priorwatch.db import init_db
from priorwatch.models import Comparison, Job, Study
from priorwatch.settings import Settings
from priorwatch.vocabulary import ComparisonResult, Evidence, FindingResult
from workers.pipeline import _earlier_result


def _result(size: float) -> ComparisonResult:
    f = FindingResult(finding="nodule", side="right", zone="upper", change="new", confidence=0.8, size_mm=size,
                      evidence=Evidence(zone="upper", box=(10, 10, 40, 40)))
    return ComparisonResult(engine="e", engine_version="1", model="m", model_version="1", has_prior=True,
                            findings=[f], draft_text="New right upper nodule.")


def test_the_latest_version_of_the_prior_s_result_is_carried(tmp_path: Path) -> None:
    engine = init_db(Settings(data_dir=tmp_path))
    with Session(engine) as s:
        prior, other = Study(study_uid="1.2.826.0.1.81", patient_id="P"), Study(study_uid="1.2.826.0.1.82", patient_id="Q")
        s.add_all([prior, other])
        s.commit()
        assert prior.id is not None and other.id is not None
        assert _earlier_result(s, prior.id) is None  # not compared yet: nothing to carry
        for k, (version, size, raw) in enumerate([(1, 8.0, None), (2, 9.5, None), (1, 30.0, None)]):
            sid = other.id if k == 2 else prior.id
            job = Job(study_id=sid, idempotency_key=f"k{k}")
            s.add(job)
            s.commit()
            s.add(Comparison(job_id=job.id, study_id=sid, study_version=version,  # type: ignore[arg-type]
                             result_json=raw or _result(size).model_dump_json()))
        s.commit()
        got = _earlier_result(s, prior.id)
        assert got is not None
        assert [f.size_mm for f in got.findings] == [9.5]  # version 2 of this study, not another patient's
        job = Job(study_id=prior.id, idempotency_key="k9")
        s.add(job)
        s.commit()
        s.add(Comparison(job_id=job.id, study_id=prior.id, study_version=3, result_json="{not json"))  # type: ignore[arg-type]
        s.commit()
        assert _earlier_result(s, prior.id) is None

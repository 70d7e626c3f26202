"""`priorwatch demo`: the whole pipeline on the embedded default, on real chest CR pairs.

Priors are sent from an archive AE (filed as priors, no job), then the currents from a
modality AE; each current runs the pipeline through the local Triton. Ends by itself.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer
from sqlmodel import select

from comparison import synthetic
from dicom_node import send_files
from priorwatch.db import session_scope
from priorwatch.export import worklist_rows
from priorwatch.models import Job, JobState, Study
from priorwatch.settings import Settings
from workers.runtime import Runtime, free_port

ARCHIVE_AE = "PW_ARCHIVE"
MODALITY_AE = "PW_MODALITY"
MARKER = ".priorwatch-demo"


def demo_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        dicom_port=free_port(),
        triton_grpc_port=free_port(),
        triton_http_port=free_port(),
        triton_metrics_port=free_port(),
        allowed_calling_aes=[ARCHIVE_AE, MODALITY_AE],
        prior_source_aes=[ARCHIVE_AE],
        completion_grace_s=0.5,
        task_max_retries=3,
        task_retry_backoff_s=1.0,
    )


def _fresh(data_dir: Path) -> None:
    if data_dir.exists():
        if not (data_dir / MARKER).exists() and any(data_dir.iterdir()):
            raise typer.BadParameter(f"{data_dir} exists and is not a demo data dir; choose another")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).touch()


def _wait_for_jobs(settings: Settings, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    finished = 0
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            finished = len(
                s.exec(select(Job).where(Job.state.in_([JobState.done, JobState.failed]))).all()  # type: ignore[attr-defined]
            )
        if finished >= expected:
            return finished
        time.sleep(0.5)
    return finished


def _wait_for_studies(settings: Settings, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope(settings) as s:
            if len(s.exec(select(Study).where(Study.state != "receiving")).all()) >= n:
                return
        time.sleep(0.2)


def run_demo(data_dir: Path, timeout_s: float = 600.0, echo=typer.echo) -> int:  # type: ignore[no-untyped-def]
    data_dir = data_dir.resolve()
    _fresh(data_dir)
    settings = demo_settings(data_dir)
    echo("Building longitudinal chest CR pairs from pydicom-data's RG1_UNCR.dcm ...")
    cases = synthetic.demo_cases(data_dir / "demo-input")
    with Runtime(settings) as rt:
        node_port = rt.settings.dicom_port
        echo(f"Node {settings.ae_title} on 127.0.0.1:{node_port}; local Triton at {rt.settings.triton_url}")
        priors = [c for c in cases if c.prior_paths]
        for c in priors:
            send_files(c.prior_paths, "127.0.0.1", node_port, settings.ae_title, calling_ae=ARCHIVE_AE)
        _wait_for_studies(rt.settings, len(priors), 60)
        echo(f"Sent {len(priors)} prior studies as the archive ({ARCHIVE_AE}).")
        for c in cases:
            send_files(c.current_paths, "127.0.0.1", node_port, settings.ae_title, calling_ae=MODALITY_AE)
        echo(f"Sent {len(cases)} current studies as a modality ({MODALITY_AE}); waiting for results ...")
        done = _wait_for_jobs(rt.settings, len(cases), timeout_s)
    with session_scope(settings) as s:
        rows = worklist_rows(s)
    echo("")
    echo("WORKLIST (urgent first) — AI drafts for radiologist review")
    echo("=" * 78)
    for r in rows:
        flag = "URGENT" if r["urgent"] else "routine"
        echo(f"[{flag}] accession {r['accession']}  ({r['status']})")
        for f in r["findings"] or ["no findings"]:
            echo(f"    - {f}")
        echo(f"    draft: {r['draft_text']}")
    echo("=" * 78)
    echo(f"{done}/{len(cases)} jobs finished. Data directory: {data_dir}")
    echo(f"See also: PRIORWATCH_DATA_DIR={data_dir} priorwatch results --json")
    return 0 if done >= len(cases) else 1

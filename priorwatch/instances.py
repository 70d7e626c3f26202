"""Which stored instance of a study is its image: one rule for the worker and the dashboard.

The worker compares the image this module picks; the review page must show that same image,
so both ask here (issue 31: the dashboard's own copy showed SR documents and later versions).
"""

from __future__ import annotations

from sqlmodel import Session, select

from priorwatch.models import Instance

__all__ = ["FRONTAL_VIEWS", "SR_CLASS_PREFIX", "frontal_instance", "is_sr_class"]

SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # every Structured Report storage SOP class
FRONTAL_VIEWS = ("PA", "AP")


def is_sr_class(sop_class_uid: str) -> bool:
    """A Structured Report (a document, never an image to compare or show)."""
    return sop_class_uid.startswith(SR_CLASS_PREFIX)


def frontal_instance(session: Session, study_id: int, up_to_version: int | None = None) -> Instance | None:
    """The image to compare and to show: the first PA/AP view, else the first image.

    SR instances are skipped; with `up_to_version`, instances that arrived in a later study
    version are too (a comparison is of the version its job ran on).
    """
    q = select(Instance).where(Instance.study_id == study_id).order_by(Instance.id)  # type: ignore[arg-type]
    if up_to_version is not None:
        q = q.where(Instance.study_version <= up_to_version)
    images = [i for i in session.exec(q).all() if not is_sr_class(i.sop_class_uid)]
    for inst in images:
        if (inst.view_position or "").upper() in FRONTAL_VIEWS:
            return inst
    return images[0] if images else None

"""A Storage SCU: send files over one association without decoding them; C-ECHO."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

#: Status reported for a file that was not sent (no association, no accepted context, aborted).
NOT_SENT = -1

# send_c_store(path) sends the file's encoded data set as is, in PDU-sized chunks, instead of
# decoding and re-encoding it. It needs an exactly matching context, which we always propose.
# (A process-wide pynetdicom switch: toggling it per call would race between threads.)
_config.STORE_SEND_CHUNKED_DATASET = True


def _file_meta(path: Path) -> tuple[str, str]:
    meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
    return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)


def send_files_detailed(
    paths: Iterable[str | PathLike[str]],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "PW_SCU",
    *,
    timeout: float = 30.0,
    max_pdu: int = 0,
    release: bool = True,
    tls_args: tuple[Any, str] | None = None,
) -> list[tuple[int, str]]:
    """Like `send_files`, with each response's ErrorComment: [(status, comment), ...]."""
    files = [Path(p) for p in paths]
    out: list[tuple[int, str]] = [(NOT_SENT, "")] * len(files)
    if not files:
        return out
    contexts = sorted({_file_meta(p) for p in files})
    if len(contexts) > 128:
        raise ValueError("more than 128 (SOP class, transfer syntax) pairs: split the send")
    ae = AE(ae_title=calling_ae)
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class, ts in contexts:  # one context per syntax: the peer may accept some, not others
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate(host, port, ae_title=called_ae, tls_args=tls_args)
    if not assoc.is_established:
        log.warning("association with %s at %s:%d failed", called_ae, host, port)
        return out
    try:
        for i, path in enumerate(files):
            if not assoc.is_established:
                break
            try:
                rsp = assoc.send_c_store(path)
            except ValueError as exc:  # no accepted context for this class / syntax
                log.warning("cannot send %s: %s", path.name, exc)
                continue
            if rsp is not None and "Status" in rsp:
                out[i] = (int(rsp.Status), str(rsp.get("ErrorComment", "") or ""))
    finally:
        if assoc.is_established:
            if release:
                assoc.release()
            else:
                assoc.abort()
    return out


def send_files(
    paths: Iterable[str | PathLike[str]],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "PW_SCU",
    *,
    timeout: float = 30.0,
    max_pdu: int = 0,
    release: bool = True,
    tls_args: tuple[Any, str] | None = None,
) -> list[int]:
    """Send Part-10 files over one association, as stored (no decoding, no re-encoding).

    Proposes one presentation context per (SOP class, transfer syntax) in the files' meta.
    Returns one status per file, in order: the peer's C-STORE status, or NOT_SENT (-1) when
    the association could not be made or broke off. `release=False` aborts at the end instead
    of releasing (a sender that vanishes). `tls_args`: (SSL context, server name) for DICOM TLS.
    """
    return [s for s, _ in send_files_detailed(paths, host, port, called_ae, calling_ae, timeout=timeout,
                                              max_pdu=max_pdu, release=release, tls_args=tls_args)]


def echo(host: str, port: int, called_ae: str, calling_ae: str = "PW_SCU", *, timeout: float = 10.0,
         tls_args: tuple[Any, str] | None = None) -> int | None:
    """C-ECHO: the peer's status (0 is success), or None when no association could be made."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_ae, tls_args=tls_args)
    if not assoc.is_established:
        return None
    try:
        rsp = assoc.send_c_echo()
        return int(rsp.Status) if rsp is not None and "Status" in rsp else None
    finally:
        if assoc.is_established:
            assoc.release()

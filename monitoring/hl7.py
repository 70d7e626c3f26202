"""Signed reports over HL7 v2 ORU^R01 / MLLP.

Each framed message (<VT> ... <FS><CR>) gets one ACK: `AA` when the report is filed against
the study with that accession number (OBR-3, else OBR-2, OBR-18, OBR-20); `AE` when it parses
but cannot be filed (unknown accession, no report text, wrong message type); `AR` when it is
not parseable HL7 at all. Every AE/AR message is kept verbatim in the HL7 inbox table.
A re-sent message (same MSH-10) is acknowledged again and stored once.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from datetime import datetime
from typing import Any

import hl7
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from monitoring.settings import MonitoringSettings, get_monitoring_settings
from priorwatch.db import get_engine, init_db
from priorwatch.models import HL7Inbox, SignedReport, Study, utcnow
from priorwatch.settings import Settings, get_settings

log = logging.getLogger(__name__)

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
CRITICAL_FLAGS = {"AA", "HH", "LL", "PANIC", "CRIT"}


class HL7Error(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def frame(message: str | bytes) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return VT + data + FS + CR


def _hl7_ts(value: str) -> datetime | None:
    v = (value or "").split("+")[0].split("-")[0].split(".")[0]
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(v[: len(datetime(2000, 1, 1).strftime(fmt))], fmt)
        except ValueError:
            continue
    return None


def _field(seg: Any, i: int) -> str:
    try:
        return str(seg[i]) if len(seg) > i else ""
    except (IndexError, KeyError):
        return ""


def _first_component(value: str) -> str:
    return value.split("^")[0].split("&")[0].strip()


def build_ack(code: str, control_id: str, text: str = "", msh: Any = None) -> str:
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    sending_app = _field(msh, 3) if msh is not None else ""
    sending_fac = _field(msh, 4) if msh is not None else ""
    version = (_field(msh, 12) if msh is not None else "") or "2.5.1"
    text = text.replace("|", "/").replace("\r", " ").replace("\n", " ")[:200]
    segs = [
        f"MSH|^~\\&|PRIORWATCH|PRIORWATCH|{sending_app}|{sending_fac}|{now}||ACK^R01^ACK|ACK{now}{control_id[:10]}|P|{version}",
        f"MSA|{code}|{control_id}" + (f"|{text}" if text else ""),
    ]
    if code != "AA":
        segs.append(f"ERR|||{'207' if code == 'AR' else '204'}|E|||{text}")
    return "\r".join(segs)


def parse_oru(raw: str) -> dict[str, Any]:
    """The parts of an ORU^R01 we file. Raises HL7Error(AR|AE, reason)."""
    raw = raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not raw.startswith("MSH"):
        raise HL7Error("AR", "not an HL7 v2 message (no MSH segment)")
    try:
        msg = hl7.parse(raw)
        msh = msg.segment("MSH")
    except Exception as exc:  # python-hl7 raises several types for bad input
        raise HL7Error("AR", f"unparseable HL7: {exc}") from exc
    control_id = _field(msh, 10)
    mtype = _field(msh, 9)
    parts = mtype.split("^")
    if parts[:2] != ["ORU", "R01"]:
        raise HL7Error("AE", f"unsupported message type {mtype or '(empty)'}; expected ORU^R01")
    if not control_id:
        raise HL7Error("AR", "MSH-10 message control id is empty")
    try:
        obr = msg.segment("OBR")
    except KeyError:
        raise HL7Error("AE", "no OBR segment") from None
    accessions = [_first_component(_field(obr, i)) for i in (3, 2, 18, 20)]
    lines: list[str] = []
    critical = False
    for seg in msg:
        if str(seg[0]) != "OBX":
            continue
        value = _field(seg, 5)
        if value:
            value = msg.unescape(value) if "\\" in value else value
            lines.append(value.replace("~", "\n"))
        if _field(seg, 8).upper() in CRITICAL_FLAGS:
            critical = True
    text = "\n".join(lines).strip()
    if not text:
        raise HL7Error("AE", "no report text in OBX-5")
    return {
        "msh": msh, "control_id": control_id, "accessions": [a for a in accessions if a],
        "status": (_field(obr, 25) or "F")[:1].upper(), "text": text, "critical": critical,
        "signed_by": _first_component(_field(obr, 32)), "signed_at": _hl7_ts(_field(obr, 22)) or _hl7_ts(_field(msh, 7)),
    }


def file_report(session: Session, study_id: int, text: str, *, accession: str = "", source: str = "review",
                control_id: str = "", critical: bool = False, signed_by: str = "", status: str = "F",
                signed_at: datetime | None = None) -> SignedReport:
    """File a signed report (also for the review page: `source="review"`)."""
    row = SignedReport(study_id=study_id, accession=accession, source=source, message_control_id=control_id,
                       result_status=status, text=text, critical=critical, signed_by=signed_by,
                       signed_at=signed_at or utcnow())
    session.add(row)
    session.flush()
    return row


def handle_message(raw: bytes, settings: Settings, peer: str = "") -> str:
    """File one message; return the ACK text. Never raises for bad input."""
    text = raw.decode("utf-8", errors="replace")
    msh, control_id = None, ""
    try:
        p = parse_oru(text)
        msh, control_id = p["msh"], p["control_id"]
        with Session(get_engine(settings), expire_on_commit=False) as s:
            dup = s.exec(select(SignedReport).where(SignedReport.source == "hl7",
                                                    SignedReport.message_control_id == control_id)).first()
            if dup is not None:
                return build_ack("AA", control_id, "duplicate; already filed", msh)
            study = None
            for acc in p["accessions"]:
                study = s.exec(select(Study).where(Study.accession == acc).order_by(Study.id.desc())).first()  # type: ignore[union-attr]
                if study is not None:
                    break
            if study is None:
                raise HL7Error("AE", "unknown accession number" + (f" {p['accessions'][0]}" if p["accessions"] else ""))
            if p["status"] not in ("F", "C"):
                return build_ack("AA", control_id, f"result status {p['status']} not final; not filed", msh)
            file_report(s, study.id, p["text"], accession=study.accession, source="hl7",  # type: ignore[arg-type]
                        control_id=control_id, critical=p["critical"], signed_by=p["signed_by"],
                        status=p["status"], signed_at=p["signed_at"])
            try:
                s.commit()
            except IntegrityError:  # a concurrent re-send won the race
                s.rollback()
                return build_ack("AA", control_id, "duplicate; already filed", msh)
        return build_ack("AA", control_id, "", msh)
    except HL7Error as err:
        _keep(settings, text, err.code, err.text, control_id, peer)
        return build_ack(err.code, control_id, err.text, msh)
    except Exception as exc:  # noqa: BLE001 - a bad message must not take the listener down
        log.exception("HL7 message failed")
        _keep(settings, text, "AE", f"internal error: {type(exc).__name__}", control_id, peer)
        return build_ack("AE", control_id, "internal error; message kept for inspection", msh)


def _keep(settings: Settings, raw: str, code: str, error: str, control_id: str, peer: str) -> None:
    try:
        with Session(get_engine(settings)) as s:
            s.add(HL7Inbox(peer=peer[:64], message_control_id=control_id[:64], ack_code=code, error=error, raw=raw))
            s.commit()
    except Exception:  # noqa: BLE001
        log.exception("could not keep a rejected HL7 message")


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.ms.hl7_read_timeout_s)
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        buf = b""
        limit = self.server.ms.hl7_max_message_bytes
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            buf += chunk
            while True:
                start = buf.find(VT)
                if start < 0:
                    if len(buf) > limit:  # junk without framing: drop it
                        buf = b""
                    break
                end = buf.find(FS + CR, start + 1)
                if end < 0:
                    if len(buf) - start > limit:
                        _keep(self.server.settings, buf[start + 1:start + 1 + 10000].decode("utf-8", "replace"),
                              "AR", f"message larger than {limit} bytes", "", peer)
                        sock.sendall(frame(build_ack("AR", "", f"message larger than {limit} bytes")))
                        return
                    buf = buf[start:]
                    break
                payload, buf = buf[start + 1:end], buf[end + 2:]
                ack = handle_message(payload, self.server.settings, peer)
                sock.sendall(frame(ack))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    settings: Settings
    ms: MonitoringSettings


class MLLPListener:
    """The MLLP listener for signed reports. `start()` runs it on a background thread."""

    def __init__(self, settings: Settings | None = None, ms: MonitoringSettings | None = None,
                 host: str | None = None, port: int | None = None) -> None:
        self.settings = settings or get_settings()
        self.ms = ms or get_monitoring_settings()
        self.host = host if host is not None else self.ms.hl7_host
        self.port = port if port is not None else self.ms.hl7_port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "MLLPListener":
        init_db(self.settings)
        srv = _Server((self.host, self.port), _Handler)
        srv.settings, srv.ms = self.settings, self.ms
        self._server = srv
        self.port = srv.server_address[1]
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="hl7-mllp", daemon=True)
        self._thread.start()
        log.info("HL7 MLLP listener on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "MLLPListener":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_service(settings: Settings) -> "MLLPListener | None":
    """Entry point `priorwatch.services`: started by `priorwatch serve` when HL7 intake is enabled."""
    from monitoring.settings import get_monitoring_settings

    if not get_monitoring_settings().hl7_enabled:
        return None
    return MLLPListener(settings).start()

"""Signed reports over HL7 v2 ORU^R01 / MLLP.

Each framed message (<VT> ... <FS><CR>) gets one ACK, always with MSA-2 (the message's control
id, read from the raw MSH even when the message is otherwise broken): `AA` when the report is
filed against the study with that accession number (OBR-3, else OBR-2, OBR-18, OBR-20) AND the
patient in PID-3 (with its assigning authority, when both sides have one) is that study's
patient; `AE` when it parses but cannot be filed (unknown accession, another patient, no
report text, wrong message type, unknown character set); `AR` when it is not HL7 at all.
Every AE/AR message is kept verbatim in the HL7 inbox table and nothing of it is filed.
The bytes are decoded in the character set MSH-18 names (8859/1 -> Latin-1, UNICODE UTF-8...).
A re-sent message (same MSH-10) is acknowledged again and stored once. Every filed or refused
report gets an audit row (no PHI in it). Times without a UTC offset are the site's wall clock
and are stored in UTC.

With `hl7_tls_cert`/`hl7_tls_key` the listener speaks MLLP over TLS only (TLS 1.2 at least) and,
with `hl7_tls_ca`, requires a client certificate signed by that CA. The handshake runs in the
connection's own thread under the read timeout, so a silent client holds up no one else.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import hl7
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from monitoring.settings import MonitoringSettings, get_monitoring_settings
from priorwatch.db import get_engine, init_db
from priorwatch.models import AuditLog, HL7Inbox, SignedReport, Study, utcnow
from priorwatch.settings import Settings, get_settings
from priorwatch.threaded import BackgroundServer

log = logging.getLogger(__name__)

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
CRITICAL_FLAGS = {"AA", "HH", "LL", "PANIC", "CRIT"}


class HL7Error(Exception):
    """A message that cannot be filed: `code` AE or AR, `text` for the ACK (no PHI), the study it named."""

    def __init__(self, code: str, text: str, study_id: int | None = None) -> None:
        super().__init__(text)
        self.code, self.text, self.study_id = code, text, study_id


def frame(message: str | bytes) -> bytes:
    data = message.encode() if isinstance(message, str) else message
    return VT + data + FS + CR


# HL7 table 0211 (MSH-18) -> Python codec. Empty MSH-18 means the settings' default.
CHARSETS = {
    "ASCII": "ascii", "ISO IR6": "ascii", "8859/1": "latin-1", "ISO IR100": "latin-1", "8859/2": "iso8859-2",
    "8859/3": "iso8859-3", "8859/4": "iso8859-4", "8859/5": "iso8859-5", "8859/6": "iso8859-6",
    "8859/7": "iso8859-7", "8859/8": "iso8859-8", "8859/9": "iso8859-9", "8859/15": "iso8859-15",
    "UNICODE": "utf-8", "UNICODE UTF-8": "utf-8", "UNICODE UTF-16": "utf-16", "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030", "BIG-5": "big5", "KS X 1001": "euc-kr", "ISO IR87": "iso2022_jp",
}
_TS = re.compile(r"^(\d{4,14})(?:\.\d+)?(?:([+-])(\d{2})(\d{2}))?$")


def _hl7_ts(value: str, local_zone: str = "UTC") -> datetime | None:
    """An HL7 TS as naive UTC: with its own offset when it has one, else read in `local_zone`."""
    m = _TS.match((value or "").strip())
    if not m:
        return None
    digits = m.group(1)
    for fmt, n in (("%Y%m%d%H%M%S", 14), ("%Y%m%d%H%M", 12), ("%Y%m%d", 8)):
        if len(digits) >= n:
            try:
                t = datetime.strptime(digits[:n], fmt)
            except ValueError:
                return None
            break
    else:
        return None
    if m.group(2):
        off = timedelta(hours=int(m.group(3)), minutes=int(m.group(4)))
        return t - off if m.group(2) == "+" else t + off
    if local_zone in ("UTC", "Etc/UTC"):
        return t
    return t.replace(tzinfo=ZoneInfo(local_zone)).astimezone(timezone.utc).replace(tzinfo=None)


def raw_msh_fields(raw: bytes | str) -> list[str]:
    """MSH fields read straight from the bytes (MSH is ASCII whatever MSH-18 says), so even a
    message that fails to parse gets its control id and charset. Index i is MSH-i."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    first = re.split(r"[\r\n]", text.lstrip(), maxsplit=1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return []
    sep = first[3]
    parts = first.split(sep)
    return ["MSH", sep] + parts[1:]  # MSH-1 is the separator itself, MSH-2 the encoding characters


def decode(raw: bytes, default: str = "utf-8") -> str:
    """The message text in the character set MSH-18 names. Raises HL7Error(AE) for an unknown one."""
    fields = raw_msh_fields(raw)
    name = (fields[18] if len(fields) > 18 else "").split("~")[0].split("^")[0].strip().upper()
    codec = CHARSETS.get(name) if name else default
    if codec is None:
        raise HL7Error("AE", f"unsupported character set in MSH-18: {name[:20]}")
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        raise HL7Error("AE", f"message bytes are not valid {name or default}") from None


def _field(seg: Any, i: int) -> str:
    try:
        return str(seg[i]) if len(seg) > i else ""
    except (IndexError, KeyError):
        return ""


def _first_component(value: str) -> str:
    return value.split("^")[0].split("&")[0].strip()


def build_ack(code: str, control_id: str, text: str = "", msh: Any = None) -> str:
    """An ACK whose MSA-2 always carries the acknowledged message's control id ("UNKNOWN" only when
    the bytes had no MSH-10 at all: HL7 makes MSA-2 required)."""
    now = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")
    control_id = (control_id or "UNKNOWN").replace("|", "/")
    sending_app = _field(msh, 3) if msh is not None else ""
    sending_fac = _field(msh, 4) if msh is not None else ""
    version = (_field(msh, 12) if msh is not None else "") or "2.5.1"
    text = text.replace("|", "/").replace("\r", " ").replace("\n", " ")[:200]
    segs = [
        f"MSH|^~\\&|PRIORWATCH|PRIORWATCH|{sending_app}|{sending_fac}|{now}||ACK^R01^ACK|ACK{now[:14]}{control_id[:10]}|P|{version}",
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
    control_id = _field(msh, 10) or ((raw_msh_fields(raw) + [""] * 11)[10])
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
    patients: list[tuple[str, str]] = []  # PID-3 repetitions: (id, assigning authority)
    try:
        pid = msg.segment("PID")
        for rep in _field(pid, 3).split("~"):
            comps = rep.split("^")
            ident = comps[0].strip()
            authority = comps[3].split("&")[0].strip() if len(comps) > 3 else ""
            if ident:
                patients.append((ident, authority))
    except KeyError:
        pass
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
        "msh": msh, "control_id": control_id, "accessions": [a for a in accessions if a], "patients": patients,
        "status": (_field(obr, 25) or "F")[:1].upper(), "text": text, "critical": critical,
        "signed_by": _first_component(_field(obr, 32)), "signed_ts": _field(obr, 22) or _field(msh, 7),
    }


def patient_matches(patients: list[tuple[str, str]], study: Study) -> bool:
    """PID-3 names the study's patient: an identifier equal to the study's, with the same assigning
    authority when both the message and the study carry one."""
    for ident, authority in patients:
        if ident == study.patient_id and (not authority or not study.issuer or authority == study.issuer):
            return True
    return False


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


def handle_message(raw: bytes, settings: Settings, peer: str = "", ms: MonitoringSettings | None = None) -> str:
    """File one message; return the ACK text. Never raises for bad input."""
    ms = ms or get_monitoring_settings()
    fields = raw_msh_fields(raw)
    control_id = fields[10].split("^")[0] if len(fields) > 10 else ""
    text = raw.decode("utf-8", errors="replace")
    msh = None
    try:
        text = decode(raw, ms.hl7_default_charset)
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
                raise HL7Error("AE", "unknown accession number")
            if not p["patients"]:
                raise HL7Error("AE", "no patient identifier in PID-3", study.id)  # type: ignore[arg-type]
            if not patient_matches(p["patients"], study):
                raise HL7Error("AE", "PID-3 patient does not match the study's patient; not filed",
                               study.id)  # type: ignore[arg-type]
            if p["status"] not in ("F", "C"):
                return build_ack("AA", control_id, f"result status {p['status']} not final; not filed", msh)
            zone = ms.site_timezones.get(study.institution, ms.timezone)
            row = file_report(s, study.id, p["text"], accession=study.accession, source="hl7",  # type: ignore[arg-type]
                              control_id=control_id, critical=p["critical"], signed_by=p["signed_by"],
                              status=p["status"], signed_at=_hl7_ts(p["signed_ts"], zone))
            s.add(AuditLog(user="hl7", action="hl7_report_filed", study_id=study.id,
                           detail=json.dumps({"signed_report_id": row.id, "control_id": control_id[:64],
                                              "peer": peer[:64], "ack": "AA"})))
            try:
                s.commit()
            except IntegrityError:  # a concurrent re-send won the race
                s.rollback()
                return build_ack("AA", control_id, "duplicate; already filed", msh)
        return build_ack("AA", control_id, "", msh)
    except HL7Error as err:
        _keep(settings, text, err.code, err.text, control_id, peer, err.study_id)
        return build_ack(err.code, control_id, err.text, msh)
    except Exception as exc:  # noqa: BLE001 - a bad message must not take the listener down
        log.error("HL7 message failed: %s", type(exc).__name__)  # no message text: it carries PHI
        _keep(settings, text, "AE", f"internal error: {type(exc).__name__}", control_id, peer, None)
        return build_ack("AE", control_id, "internal error; message kept for inspection", msh)


def _keep(settings: Settings, raw: str, code: str, error: str, control_id: str, peer: str,
          study_id: int | None = None) -> None:
    """Keep a refused message in the inbox, with an audit row saying it was refused (and why)."""
    try:
        with Session(get_engine(settings)) as s:
            box = HL7Inbox(peer=peer[:64], message_control_id=control_id[:64], ack_code=code, error=error, raw=raw)
            s.add(box)
            s.flush()
            s.add(AuditLog(user="hl7", action="hl7_report_refused", study_id=study_id,
                           detail=json.dumps({"inbox_id": box.id, "control_id": control_id[:64], "peer": peer[:64],
                                              "ack": code, "reason": error[:200]})))
            s.commit()
    except Exception:  # noqa: BLE001
        log.exception("could not keep a rejected HL7 message")


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.ms.hl7_read_timeout_s)
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError) as exc:  # plain TCP, no or a foreign certificate, silence
                log.warning("HL7 MLLP: TLS handshake failed (%s)", type(exc).__name__)
                return
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
                        head = raw_msh_fields(buf[start + 1:start + 1 + 10000])
                        cid = head[10].split("^")[0] if len(head) > 10 else ""
                        _keep(self.server.settings, buf[start + 1:start + 1 + 10000].decode("utf-8", "replace"),
                              "AR", f"message larger than {limit} bytes", cid, peer)
                        sock.sendall(frame(build_ack("AR", cid, f"message larger than {limit} bytes")))
                        return
                    buf = buf[start:]
                    break
                payload, buf = buf[start + 1:end], buf[end + 2:]
                ack = handle_message(payload, self.server.settings, peer, self.server.ms)
                sock.sendall(frame(ack.encode("utf-8")))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    settings: Settings
    ms: MonitoringSettings
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:  # handshake later, in the connection's thread (_Handler)
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class HL7TlsConfigError(ValueError):
    """The MLLP TLS settings are incomplete or a file cannot be used."""


def server_context(ms: MonitoringSettings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None when no certificate is configured (plain MLLP)."""
    if ms.hl7_tls_cert is None:
        return None
    if ms.hl7_tls_key is None:
        raise HL7TlsConfigError("hl7_tls_cert is set but hl7_tls_key is not")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(ms.hl7_tls_cert), str(ms.hl7_tls_key))
        if ms.hl7_tls_ca is not None:
            ctx.load_verify_locations(cafile=str(ms.hl7_tls_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise HL7TlsConfigError(f"cannot load the HL7 TLS certificate, key or CA: {exc}") from exc
    return ctx


class MLLPListener(BackgroundServer):
    """The MLLP listener for signed reports. `start()` runs it on a background thread."""

    thread_name = "hl7-mllp"

    def __init__(self, settings: Settings | None = None, ms: MonitoringSettings | None = None,
                 host: str | None = None, port: int | None = None) -> None:
        super().__init__()
        self.settings = settings or get_settings()
        self.ms = ms or get_monitoring_settings()
        self.host = host if host is not None else self.ms.hl7_host
        self.port = port if port is not None else self.ms.hl7_port
        self._tls = False

    def make_server(self) -> _Server:
        init_db(self.settings)
        ctx = server_context(self.ms)  # a bad TLS setting stops the start, loudly
        srv = _Server((self.host, self.port), _Handler)
        srv.settings, srv.ms, srv.ssl_context = self.settings, self.ms, ctx
        self._tls = ctx is not None
        return srv

    def started(self) -> None:
        log.info("HL7 MLLP listener on %s:%s (%s)", self.host, self.port, "TLS" if self._tls else "plain TCP")

    def start(self) -> "MLLPListener":
        """The base's start, typed so callers keep `MLLPListener` (e.g. `.port`)."""
        return super().start()  # type: ignore[no-any-return]

    def __enter__(self) -> "MLLPListener":
        return self.start()


def start_service(settings: Settings) -> "MLLPListener | None":
    """Entry point `priorwatch.services`: started by `priorwatch serve` when HL7 intake is enabled."""
    from monitoring.settings import get_monitoring_settings

    if not get_monitoring_settings().hl7_enabled:
        return None
    return MLLPListener(settings).start()

"""HL7 ORU^R01 over real MLLP on loopback (python-hl7's MLLPClient, and a raw socket for bytes
MLLPClient would not send)."""

import json
import socket
from datetime import datetime

import hl7
import pytest
from hl7.client import MLLPClient
from sqlmodel import Session, select

from monitoring.hl7 import MLLPListener, frame
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine
from priorwatch.models import AuditLog, HL7Inbox, SignedReport, Study


def oru(control_id="MSG1", accession="ACC1", text="Stable right pleural effusion.", status="F", flag="",
        mtype="ORU^R01", pid3="P1^^^HOSP^MR", charset="", signed="20250301101000"):
    obr = [""] * 33
    obr[0], obr[1], obr[2], obr[3], obr[4] = "OBR", "1", "ORD1", accession, "XR CHEST^Chest X-ray"
    obr[7], obr[22], obr[25], obr[32] = "20250301090000", signed, status, "DRSMITH&Smith&Anna"
    obx = ["OBX", "1", "TX", "IMP^Impression", "", text, "", "", flag, "", "", "F"]
    return "\r".join([
        f"MSH|^~\\&|RIS|HOSP|PRIORWATCH|HOSP|20250301101500||{mtype}|{control_id}|P|2.5.1||||||{charset}",
        f"PID|1||{pid3}||DOE^JANE||19600101|F",
        "|".join(obr),
        "|".join(obx),
    ])


@pytest.fixture
def listener(pw_settings):
    with Session(get_engine(pw_settings)) as s:
        s.add(Study(study_uid="2.25.1", patient_id="P1", issuer="HOSP", accession="ACC1", institution="SITE_A"))
        s.commit()
    ms = MonitoringSettings(timezone="Europe/Berlin")
    with MLLPListener(pw_settings, ms, host="127.0.0.1", port=0) as lst:
        yield lst


def msa(ack) -> tuple[str, str]:
    if isinstance(ack, bytes):
        ack = ack.decode()
    seg = hl7.parse(ack.strip("\x0b\x1c\r")).segment("MSA")
    return str(seg[1]), str(seg[2])


def ack_code(ack) -> str:
    """MSA-1 alone (used by the serve end-to-end test)."""
    return msa(ack)[0]


def send_raw(port: int, payloads: list[bytes]) -> list[str]:
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rb")
        for raw in payloads:
            sock.sendall(frame(raw))
            buf = b""
            while not buf.endswith(b"\x1c\r"):
                buf += f.read1(65536)
            out.append(buf.decode())
    return out


def test_signed_report_filed_acked_audited_and_signed_time_in_utc(listener, pw_settings):
    with MLLPClient("127.0.0.1", listener.port) as c:
        assert msa(c.send_message(oru(flag="AA"))) == ("AA", "MSG1")
        assert msa(c.send_message(oru())) == ("AA", "MSG1")  # re-sent: acknowledged again, stored once
    with Session(get_engine(pw_settings)) as s:
        reps = s.exec(select(SignedReport)).all()
        audits = s.exec(select(AuditLog).where(AuditLog.action == "hl7_report_filed")).all()
    assert len(reps) == 1 and len(audits) == 1
    r = reps[0]
    assert r.text == "Stable right pleural effusion." and r.accession == "ACC1" and r.source == "hl7"
    assert r.critical and r.signed_by == "DRSMITH" and r.message_control_id == "MSG1"
    assert r.signed_at == datetime(2025, 3, 1, 9, 10)  # 10:10 in Berlin (UTC+1) is 09:10 UTC
    assert json.loads(audits[0].detail)["signed_report_id"] == r.id and "P1" not in audits[0].detail


def test_report_for_another_patient_gets_ae_is_kept_and_nothing_is_filed(listener, pw_settings):
    with MLLPClient("127.0.0.1", listener.port) as c:
        assert msa(c.send_message(oru(control_id="X1", pid3="P2^^^HOSP^MR"))) == ("AE", "X1")
        # the right number from another assigning authority is another patient too
        assert msa(c.send_message(oru(control_id="X2", pid3="P1^^^OTHERHOSP^MR"))) == ("AE", "X2")
        assert msa(c.send_message(oru(control_id="X3", pid3=""))) == ("AE", "X3")
    with Session(get_engine(pw_settings)) as s:
        assert s.exec(select(SignedReport)).all() == []
        kept = s.exec(select(HL7Inbox).order_by(HL7Inbox.id)).all()
        refused = s.exec(select(AuditLog).where(AuditLog.action == "hl7_report_refused")).all()
    assert [k.message_control_id for k in kept] == ["X1", "X2", "X3"]
    assert "does not match" in kept[0].error and "P2" in kept[0].raw
    assert len(refused) == 3 and all(a.study_id is not None for a in refused)
    assert all("P1" not in a.detail and "P2" not in a.detail for a in refused)


def test_msh18_latin1_is_decoded(listener, pw_settings):
    text = "Kleiner Pleuraerguss links, unverändert; Zustand nach Rippenfraktur."
    raw = oru(control_id="L1", text=text, charset="8859/1").encode("latin-1")
    assert b"\xe4" in raw  # a real Latin-1 byte, not UTF-8
    assert msa(send_raw(listener.port, [raw])[0]) == ("AA", "L1")
    with Session(get_engine(pw_settings)) as s:
        assert s.exec(select(SignedReport)).one().text == text


def test_every_error_ack_carries_msa2_and_the_message_is_kept(listener, pw_settings):
    acks = send_raw(listener.port, [
        oru(control_id="M2", accession="NOPE").encode(),  # unknown accession
        oru(control_id="M3", mtype="ADT^A01").encode(),  # wrong type
        oru(control_id="M4", text="").encode(),  # no report text
        oru(control_id="M6", charset="KLINGON").encode(),  # unknown character set
        b"this is not hl7 at all",
        oru(control_id="M5").encode(),  # the connection survives: a good one still files
    ])
    assert [msa(a) for a in acks] == [("AE", "M2"), ("AE", "M3"), ("AE", "M4"), ("AE", "M6"), ("AR", "UNKNOWN"),
                                      ("AA", "M5")]
    with Session(get_engine(pw_settings)) as s:
        kept = s.exec(select(HL7Inbox).order_by(HL7Inbox.id)).all()
        n_reports = len(s.exec(select(SignedReport)).all())
    assert [k.ack_code for k in kept] == ["AE", "AE", "AE", "AE", "AR"]
    assert "unknown accession" in kept[0].error and "NOPE" in kept[0].raw and "NOPE" not in kept[0].error
    assert kept[4].raw == "this is not hl7 at all"
    assert n_reports == 1


def test_preliminary_not_filed(listener, pw_settings):
    with MLLPClient("127.0.0.1", listener.port) as c:
        assert msa(c.send_message(oru(control_id="P1", status="P")))[0] == "AA"
    with Session(get_engine(pw_settings)) as s:
        assert s.exec(select(SignedReport)).all() == []

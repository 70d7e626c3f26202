"""HL7 ORU^R01 over MLLP on loopback: python-hl7's MLLP client and a raw socket."""

import socket

import hl7
import pytest
from hl7.client import MLLPClient
from sqlmodel import Session, select

from monitoring.hl7 import MLLPListener, frame
from monitoring.settings import MonitoringSettings
from priorwatch.db import get_engine
from priorwatch.models import HL7Inbox, SignedReport, Study


def oru(control_id="MSG1", accession="ACC1", text="Stable right pleural effusion.", status="F", flag="",
        mtype="ORU^R01"):
    obr = [""] * 33
    obr[0], obr[1], obr[2], obr[3], obr[4] = "OBR", "1", "ORD1", accession, "XR CHEST^Chest X-ray"
    obr[7], obr[22], obr[25], obr[32] = "20250301090000", "20250301101000", status, "DRSMITH&Smith&Anna"
    obx = ["OBX", "1", "TX", "IMP^Impression", "", text, "", "", flag, "", "", "F"]
    return "\r".join([
        f"MSH|^~\\&|RIS|HOSP|PRIORWATCH|HOSP|20250301101500||{mtype}|{control_id}|P|2.5.1",
        "PID|1||P1||DOE^JANE||19600101|F",
        "|".join(obr),
        "|".join(obx),
    ])


@pytest.fixture
def listener(pw_settings):
    with Session(get_engine(pw_settings)) as s:
        s.add(Study(study_uid="2.25.1", patient_id="P1", accession="ACC1"))
        s.commit()
    with MLLPListener(pw_settings, MonitoringSettings(), host="127.0.0.1", port=0) as lst:
        yield lst


def ack_code(ack) -> str:
    if isinstance(ack, bytes):
        ack = ack.decode()
    return str(hl7.parse(ack.strip("\x0b\x1c\r")).segment("MSA")[1])


def test_signed_report_filed_and_acked(listener, pw_settings):
    with MLLPClient("127.0.0.1", listener.port) as c:
        ack = c.send_message(oru(flag="AA"))
        assert ack_code(ack) == "AA"
        # re-sent: acknowledged again, stored once
        assert ack_code(c.send_message(oru())) == "AA"
    with Session(get_engine(pw_settings)) as s:
        reps = s.exec(select(SignedReport)).all()
    assert len(reps) == 1
    r = reps[0]
    assert r.text == "Stable right pleural effusion." and r.accession == "ACC1" and r.source == "hl7"
    assert r.critical and r.signed_by == "DRSMITH" and r.message_control_id == "MSG1"


def test_bad_messages_get_error_acks_and_are_kept(listener, pw_settings):
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        f = sock.makefile("rb")

        def send(raw: str) -> str:
            sock.sendall(frame(raw))
            buf = b""
            while not buf.endswith(b"\x1c\r"):
                buf += f.read1(65536)
            return buf.decode()

        assert ack_code(send(oru(control_id="M2", accession="NOPE"))) == "AE"  # unknown accession
        assert ack_code(send(oru(control_id="M3", mtype="ADT^A01"))) == "AE"  # wrong type
        assert ack_code(send(oru(control_id="M4", text=""))) == "AE"  # no report text
        nak = send("this is not hl7 at all")
        assert "MSA|AR" in nak
        # the connection survives bad input: a good one still files
        assert ack_code(send(oru(control_id="M5"))) == "AA"
    with Session(get_engine(pw_settings)) as s:
        kept = s.exec(select(HL7Inbox).order_by(HL7Inbox.id)).all()
        n_reports = len(s.exec(select(SignedReport)).all())
    assert [k.ack_code for k in kept] == ["AE", "AE", "AE", "AR"]
    assert "unknown accession" in kept[0].error and "NOPE" in kept[0].raw
    assert kept[3].raw == "this is not hl7 at all"
    assert n_reports == 1


def test_preliminary_not_filed(listener, pw_settings):
    with MLLPClient("127.0.0.1", listener.port) as c:
        assert ack_code(c.send_message(oru(control_id="P1", status="P"))) == "AA"
    with Session(get_engine(pw_settings)) as s:
        assert s.exec(select(SignedReport)).all() == []

"""A lean C-STORE sender for benchmarks: pre-encoded PDUs replayed over a raw socket.

DCMTK storescu starts one process per call (~20-25 ms of CPU measured here), and a pynetdicom
SCU runs two Python threads per association: either costs more per 2-instance study than the
receivers being compared, so the "one association per study" rows measured the sender. This
one encodes every PDU before the clock starts (A-ASSOCIATE-RQ, P-DATA with the C-STORE-RQ
command and the data set, A-RELEASE-RQ) and per association only writes them and reads the
answers. It still checks what a sender must: the A-ASSOCIATE-AC accepted the context it uses
(with the transfer syntax the data set is in), every C-STORE-RSP is Success (0x0000), and the
release is answered. Each receiver gets the same bytes except the Called AE title in the
request and the P-DATA fragmenting, which follows the maximum PDU length that receiver states.

What it proposes is what a modality sending its images proposes: one context per SOP class it
sends, with the data set's own transfer syntax (plus Implicit VR Little Endian, always allowed
to be proposed, in a second context); not DCMTK storescu's ~130 contexts.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.filereader import read_preamble, _read_file_meta_info  # type: ignore[attr-defined]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7156.1.99"  # this benchmark's own root
IMPLEMENTATION_VERSION = "PW_RAWSCU"
OUR_MAX_PDU = 16384  # what we receive (C-STORE-RSP PDUs are ~200 bytes)
SOCKET_TIMEOUT_S = 30.0  # a receiver that stops answering fails the run, never hangs it


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw  # UIDs in PDU items are not padded


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _element(elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, elem, len(value)) + value


def _even_uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


@dataclass(slots=True)
class Instance:
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    dataset: bytes  # the data set as stored in the file, after its file meta


def read_instance(path: Path) -> Instance:
    """The data set bytes of a Part-10 file, read once (no decoding of the data set)."""
    with open(path, "rb") as f:
        read_preamble(f, False)
        meta = _read_file_meta_info(f)
        data = f.read()
    return Instance(str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                    str(meta.TransferSyntaxUID), data)


def store_command(inst: Instance, message_id: int) -> bytes:
    body = b"".join([
        _element(0x0002, _even_uid(inst.sop_class)),
        _element(0x0100, struct.pack("<H", 0x0001)),  # C-STORE-RQ
        _element(0x0110, struct.pack("<H", message_id)),
        _element(0x0700, struct.pack("<H", 0x0000)),  # medium priority
        _element(0x0800, struct.pack("<H", 0x0000)),  # a data set follows
        _element(0x1000, _even_uid(inst.sop_instance)),
    ])
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _pdata(context_id: int, control: int, chunk: bytes) -> bytes:
    pdv = struct.pack(">IBB", len(chunk) + 2, context_id, control) + chunk
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def store_pdus(inst: Instance, context_id: int, message_id: int, max_pdu: int) -> bytes:
    """The P-DATA-TF PDUs of one C-STORE-RQ: the command in one PDV, then the data set in
    fragments of at most `max_pdu` bytes a PDU (0: no limit)."""
    out = [_pdata(context_id, 0x03, store_command(inst, message_id))]
    step = (max_pdu - 6) if max_pdu else len(inst.dataset) or 1
    data = inst.dataset
    for i in range(0, len(data), step):
        last = i + step >= len(data)
        out.append(_pdata(context_id, 0x02 if last else 0x00, data[i:i + step]))
    return b"".join(out)


def associate_rq(called: str, calling: str, contexts: list[tuple[int, str, str]]) -> bytes:
    items = [_item(0x10, _uid(APPLICATION_CONTEXT))]
    for cid, abstract, ts in contexts:
        items.append(_item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + _item(0x30, _uid(abstract)) + _item(0x40, _uid(ts))))
    user = (_item(0x51, struct.pack(">I", OUR_MAX_PDU)) + _item(0x52, _uid(IMPLEMENTATION_UID))
            + _item(0x55, IMPLEMENTATION_VERSION.encode("ascii")))
    items.append(_item(0x50, user))
    head = struct.pack(">HH", 1, 0) + called.encode("ascii").ljust(16)[:16] + calling.encode("ascii").ljust(16)[:16] + bytes(32)
    body = head + b"".join(items)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBII", 0x05, 0, 4, 0)


class SendError(RuntimeError):
    pass


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = _read_exact(sock, 6)
    kind, _, length = struct.unpack(">BBI", head)
    return kind, _read_exact(sock, length)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise SendError("connection closed by the receiver")
        got += k
    return bytes(buf)


def parse_ac(body: bytes) -> tuple[dict[int, str], int]:
    """Accepted contexts {id: transfer syntax} and the receiver's maximum PDU length (0: none)."""
    accepted: dict[int, str] = {}
    max_pdu = 0
    pos = 68  # protocol version, reserved, AE titles, reserved
    while pos + 4 <= len(body):
        kind, _, length = struct.unpack_from(">BBH", body, pos)
        item = body[pos + 4:pos + 4 + length]
        if kind == 0x21 and item[2] == 0:  # accepted
            sub = item[4:]
            if sub[:1] == b"\x40":
                (sl,) = struct.unpack_from(">H", sub, 2)
                accepted[item[0]] = sub[4:4 + sl].decode("ascii").rstrip("\0 ")
        elif kind == 0x50:
            p = 0
            while p + 4 <= len(item):
                sk, _, sl = struct.unpack_from(">BBH", item, p)
                if sk == 0x51:
                    (max_pdu,) = struct.unpack_from(">I", item, p + 4)
                p += 4 + sl
        pos += 4 + length
    return accepted, max_pdu


def _status(sock: socket.socket) -> int:
    """Read one C-STORE-RSP (its command may span PDVs and PDUs) and return its Status."""
    command = b""
    while True:
        kind, body = _read_pdu(sock)
        if kind != 0x04:
            raise SendError(f"PDU type 0x{kind:02X} where a C-STORE-RSP was expected")
        pos = 0
        while pos < len(body):
            (length,) = struct.unpack_from(">I", body, pos)
            control = body[pos + 5]
            command += body[pos + 6:pos + 4 + length]
            pos += 4 + length
            if control & 0x03 == 0x03:
                p = 0
                while p + 8 <= len(command):
                    _, elem, vl = struct.unpack_from("<HHI", command, p)
                    if elem == 0x0900:
                        return int(struct.unpack_from("<H", command, p + 8)[0])
                    p += 8 + vl
                raise SendError("C-STORE-RSP without a Status")


@dataclass
class Study:
    """One association's worth of instances, with its PDUs encoded per (called AE, max PDU)."""

    instances: list[Instance]
    contexts: list[tuple[int, str, str]] = field(default_factory=list)
    _encoded: dict[tuple[str, str, int], tuple[bytes, list[bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pairs: list[tuple[str, str]] = []
        for inst in self.instances:
            for ts in (inst.transfer_syntax, IMPLICIT_LE):
                if (inst.sop_class, ts) not in pairs:
                    pairs.append((inst.sop_class, ts))
        self.contexts = [(2 * i + 1, a, t) for i, (a, t) in enumerate(pairs)]

    def context_for(self, inst: Instance) -> int:
        for cid, abstract, ts in self.contexts:
            if abstract == inst.sop_class and ts == inst.transfer_syntax:
                return cid
        raise AssertionError("every instance has its own context")

    def encode(self, called: str, calling: str, max_pdu: int) -> tuple[bytes, list[bytes]]:
        """The association request and each C-STORE's PDUs (cached: call it before timing)."""
        key = (called, calling, max_pdu)
        if key not in self._encoded:
            self._encoded.clear()  # one receiver at a time: keep one copy of the large PDUs
            msgs = [store_pdus(inst, self.context_for(inst), i + 1, max_pdu) for i, inst in enumerate(self.instances)]
            self._encoded[key] = (associate_rq(called, calling, self.contexts), msgs)
        return self._encoded[key]


def send_study(study: Study, host: str, port: int, called: str, calling: str, max_pdu: int | None = None) -> list[int]:
    """One association: request, each C-STORE (waiting for its response), release; returns
    each instance's status. `max_pdu`: what the receiver is expected to state (PDUs encoded for
    it beforehand); it stating another is an error. Raises SendError on a refusal or a surprise."""
    if max_pdu is not None:
        rq, msgs = study.encode(called, calling, max_pdu)
    else:
        rq = associate_rq(called, calling, study.contexts)
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(rq)
        kind, body = _read_pdu(sock)
        if kind != 0x02:
            raise SendError(f"association not accepted (PDU type 0x{kind:02X})")
        accepted, stated = parse_ac(body)
        if max_pdu is None:
            _, msgs = study.encode(called, calling, stated)
        elif stated != max_pdu:
            raise SendError(f"the receiver states a maximum PDU of {stated}, not {max_pdu}")
        for inst in study.instances:
            cid = study.context_for(inst)
            if accepted.get(cid) != inst.transfer_syntax:
                raise SendError("the receiver did not accept the context of the data set's class and transfer syntax")
        statuses = []
        for msg in msgs:
            sock.sendall(msg)
            statuses.append(_status(sock))
        sock.sendall(RELEASE_RQ)
        kind, _ = _read_pdu(sock)
        if kind != 0x06:
            raise SendError(f"release not answered (PDU type 0x{kind:02X})")
    return statuses


def probe_max_pdu(study: Study, host: str, port: int, called: str, calling: str) -> int:
    """Send `study` once (a warm-up) and return the maximum PDU length the receiver stated."""
    rq = associate_rq(called, calling, study.contexts)
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(rq)
        kind, body = _read_pdu(sock)
        if kind != 0x02:
            raise SendError(f"association not accepted (PDU type 0x{kind:02X})")
        _, stated = parse_ac(body)
        sock.sendall(RELEASE_RQ)
        _read_pdu(sock)
    return stated


def prepare(paths: list[Path], per_association: int) -> list[Study]:
    """Read `paths` into studies of `per_association` instances (0: all in one association)."""
    step = per_association or len(paths) or 1
    insts = [read_instance(p) for p in paths]
    return [Study(insts[i:i + step]) for i in range(0, len(insts), step)]

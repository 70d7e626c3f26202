"""The node's own DICOM upper layer (PS3.8) for what modalities send: Verification and Storage SCP.

`Settings.node_accept = "lean"` (`PRIORWATCH_NODE_ACCEPT=lean`) puts this in front of the same
spool, index, guard and statuses as pynetdicom's path (`dicom_node.scp`); a node with TLS on
uses pynetdicom's path whatever the setting says. Why: pynetdicom spends ~2.1 ms of CPU and two
threads (association reactor + DUL reactor) on every association before the first C-STORE,
Orthanc 0.1-0.17 ms (issue 32); a modality opens one association per study.

One thread per connection, blocking reads against deadlines: the thread that accepts a
connection serves it, after starting the next acceptor (leader/follower; bare `_thread` threads:
`threading.Thread.start()` waits for the new thread to run). What an association does, in order:

- the connection must send its A-ASSOCIATE-RQ within `Limits.artim_timeout_s` (ARTIM), and
  every PDU must arrive whole within `Limits.pdu_timeout_s` of its first byte; an established
  association silent for `Settings.dicom_idle_timeout_s` is aborted; a PDU longer than what we
  negotiated (P-DATA) or than an association PDU needs is aborted before its body is read;
  connections still negotiating are capped (`Limits.max_pending*`, oldest dropped first);
- A-ASSOCIATE-RQ: protocol version 1 and the DICOM application context, else rejected
  (PS3.8 9.3.4); then `Guard.admit` (no presentation context: rejected; called AE not ours:
  "called AE title not recognised"; node-wide association limits: "local limit exceeded");
  then `Settings.allowed_calling_aes` ("calling AE title not recognised");
- presentation contexts: a storage SOP class or Verification, with the first transfer syntax
  of pynetdicom's `ALL_TRANSFER_SYNTAXES` the requestor proposes (pynetdicom's choice); others
  rejected 0x03 (abstract syntax) or 0x04 (transfer syntaxes). SCP/SCU role selection,
  asynchronous operations, user identity and extended negotiation items are read past and not
  answered: the default roles and one operation at a time hold, as PS3.7 D.3.3 says for an
  acceptor that does not support them;
- A-ASSOCIATE-AC with our maximum PDU length (`Settings.dicom_max_pdu_bytes`) and pynetdicom's
  implementation class UID and version name (what this node has always sent);
- P-DATA-TF: PDVs reassembled per message (command fragments, then data set fragments on the
  same context); C-ECHO-RQ answered Success; C-STORE-RQ's data set handed to `store` (the
  node's `Ingest.store_dataset`: spool file fdatasync'd and indexed before the response), its
  status and ErrorComment answered as pynetdicom's path answers them; any other request
  answered 0x0211 (unrecognised operation);
- A-RELEASE-RQ: the studies stored in this association are marked released (`on_released`),
  then A-RELEASE-RP; A-ABORT or a dropped connection: nothing marked, a data set not complete
  is dropped (never written), the slot given back.
"""

from __future__ import annotations

import _thread
import io
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dicom_node import guard as _guard

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"

# PDU types (PS3.8 9.3)
A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = range(1, 8)

# A-ABORT reasons (source 2, service provider): PS3.8 9.3.8
ABORT_NOT_SPECIFIED = 0x00
ABORT_UNRECOGNISED_PDU = 0x01
ABORT_UNEXPECTED_PDU = 0x02
ABORT_INVALID_PARAMETER = 0x06

REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)  # permanent, service user, application context not supported
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)  # permanent, service provider (ACSE), protocol version

STATUS_UNRECOGNISED_OPERATION = 0x0211
STATUS_CANNOT_UNDERSTAND = 0xC210

_HEAD = struct.Struct(">BBI")
_ITEM = struct.Struct(">BBH")
_PDV = struct.Struct(">IBB")
_CMD_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<H")


class ProtocolError(Exception):
    """The peer broke PS3.8: the association is aborted (source 2, `reason`)."""

    def __init__(self, reason: int, why: str) -> None:
        super().__init__(why)
        self.reason = reason


class _Closed(Exception):
    """The peer closed the connection, or it was shut under us."""


# -- A-ASSOCIATE-RQ ----------------------------------------------------------------------------
@dataclass
class AssociateRequest:
    protocol_version: int
    called_raw: bytes
    calling_raw: bytes
    application_context: str | None
    contexts: list[tuple[int, str, list[str]]] = field(default_factory=list)  # (id, abstract, transfer syntaxes)
    max_length: int = 0
    implementation_class_uid: str = ""
    implementation_version_name: str = ""

    @property
    def called(self) -> str:
        return _text(self.called_raw)

    @property
    def calling(self) -> str:
        return _text(self.calling_raw)


def _text(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("ascii", "replace").strip(" \0")


def _items(data: memoryview, start: int, end: int) -> Iterable[tuple[int, memoryview]]:
    pos = start
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError(ABORT_INVALID_PARAMETER, "an item header runs past its PDU")
        kind, _, length = _ITEM.unpack_from(data, pos)
        if pos + 4 + length > end:
            raise ProtocolError(ABORT_INVALID_PARAMETER, f"item 0x{kind:02X} runs past its PDU")
        yield kind, data[pos + 4:pos + 4 + length]
        pos += 4 + length


def parse_associate_rq(body: bytes | bytearray | memoryview) -> AssociateRequest:
    """An A-ASSOCIATE-RQ's body (after the 6-byte PDU header)."""
    data = memoryview(body)
    if len(data) < 68:
        raise ProtocolError(ABORT_INVALID_PARAMETER, "A-ASSOCIATE-RQ shorter than its fixed fields")
    rq = AssociateRequest(protocol_version=struct.unpack_from(">H", data, 0)[0],
                          called_raw=bytes(data[4:20]), calling_raw=bytes(data[20:36]), application_context=None)
    for kind, value in _items(data, 68, len(data)):
        if kind == 0x10:
            rq.application_context = _text(value)
        elif kind == 0x20:
            if len(value) < 4:
                raise ProtocolError(ABORT_INVALID_PARAMETER, "presentation context item too short")
            abstract = ""
            syntaxes: list[str] = []
            for sub, sv in _items(value, 4, len(value)):
                if sub == 0x30:
                    abstract = _text(sv)
                elif sub == 0x40:
                    syntaxes.append(_text(sv))
            rq.contexts.append((value[0], abstract, syntaxes))
        elif kind == 0x50:
            for sub, sv in _items(value, 0, len(value)):
                if sub == 0x51 and len(sv) == 4:
                    rq.max_length = struct.unpack(">I", sv)[0]
                elif sub == 0x52:
                    rq.implementation_class_uid = _text(sv)
                elif sub == 0x55:
                    rq.implementation_version_name = _text(sv)
                # 0x53 async operations, 0x54 role selection, 0x56/0x57 extended negotiation,
                # 0x58 user identity: not supported here, read past (PS3.7 D.3.3)
    return rq


def _item(kind: int, value: bytes) -> bytes:
    return _ITEM.pack(kind, 0, len(value)) + value


def _pdu(kind: int, body: bytes) -> bytes:
    return _HEAD.pack(kind, 0, len(body)) + body


def _uid(value: str) -> bytes:
    return value.encode("ascii")


def negotiate(contexts: list[tuple[int, str, list[str]]], abstract_syntaxes: frozenset[str],
              syntax_rank: dict[str, int]) -> list[tuple[int, int, str, str]]:
    """(context id, result, abstract syntax, transfer syntax) per proposed context, by id, as
    pynetdicom's `negotiate_as_acceptor` decides them (the same context id twice: the last)."""
    by_id: dict[int, tuple[int, int, str, str]] = {}
    for cid, abstract, syntaxes in contexts:
        first = syntaxes[0] if syntaxes else ""
        if abstract not in abstract_syntaxes:
            by_id[cid] = (cid, 0x03, abstract, first)
            continue
        ranked = [(syntax_rank[ts], ts) for ts in syntaxes if ts in syntax_rank]
        by_id[cid] = (cid, 0x00, abstract, min(ranked)[1]) if ranked else (cid, 0x04, abstract, first)
    return [by_id[k] for k in sorted(by_id)]


def encode_associate_ac(rq: AssociateRequest, results: list[tuple[int, int, str, str]], max_pdu: int,
                        implementation_class_uid: str, implementation_version_name: str) -> bytes:
    body = [struct.pack(">HH", 1, 0), rq.called_raw, rq.calling_raw, b"\0" * 32, _item(0x10, _uid(APPLICATION_CONTEXT))]
    for cid, result, _abstract, ts in results:
        body.append(_item(0x21, bytes((cid, 0, result, 0)) + _item(0x40, _uid(ts))))
    user = _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, _uid(implementation_class_uid))
    if implementation_version_name:
        user += _item(0x55, implementation_version_name.encode("ascii"))
    body.append(_item(0x50, user))
    return _pdu(A_ASSOCIATE_AC, b"".join(body))


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    return _pdu(A_ASSOCIATE_RJ, bytes((0, result, source, reason)))


def encode_abort(source: int, reason: int) -> bytes:
    return _pdu(A_ABORT, bytes((0, 0, source, reason)))


RELEASE_RP = _pdu(A_RELEASE_RP, b"\0\0\0\0")


# -- DIMSE command sets (Implicit VR Little Endian, group 0000) -----------------------------------
def parse_command(command: bytes | bytearray) -> dict[int, bytes]:
    """Element number -> value of a command set; ProtocolError where it is not one."""
    values: dict[int, bytes] = {}
    pos, end = 0, len(command)
    while pos < end:
        if pos + 8 > end:
            raise ProtocolError(ABORT_INVALID_PARAMETER, "a command element runs past its command set")
        group, element, length = _CMD_ELEMENT.unpack_from(command, pos)
        pos += 8
        if group != 0x0000 or length == 0xFFFFFFFF or pos + length > end:
            raise ProtocolError(ABORT_INVALID_PARAMETER, "not a command set element")
        values[element] = bytes(command[pos:pos + length])
        pos += length
    if len(values.get(0x0100, b"")) != 2:
        raise ProtocolError(ABORT_INVALID_PARAMETER, "command set without a Command Field")
    return values


def _us(values: dict[int, bytes], element: int, default: int = 0) -> int:
    v = values.get(element, b"")
    return _US.unpack(v)[0] if len(v) == 2 else default


def _cmd_text(values: dict[int, bytes], element: int) -> str:
    return values.get(element, b"").decode("ascii", "replace").strip("\0 ")


def _cmd_element(element: int, value: bytes) -> bytes:
    return _CMD_ELEMENT.pack(0x0000, element, len(value)) + value


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def response_command(command_field: int, message_id: int, status: int, *, sop_class_uid: str | None = None,
                     sop_instance_uid: str | None = None, comment: str | None = None) -> bytes:
    """A response's encoded command set, laid out as pynetdicom lays it out (ascending tags,
    group length first; for a C-STORE-RSP byte for byte `netfast.store_response_command`)."""
    parts = []
    if sop_class_uid is not None:
        parts.append(_cmd_element(0x0002, _even(sop_class_uid.encode("ascii"), b"\0")))
    parts.append(_cmd_element(0x0100, _US.pack(command_field)))
    parts.append(_cmd_element(0x0120, _US.pack(message_id)))
    parts.append(_cmd_element(0x0800, _US.pack(0x0101)))
    parts.append(_cmd_element(0x0900, _US.pack(status)))
    if comment is not None:
        parts.append(_cmd_element(0x0902, _even(comment.encode("ascii", "replace"), b" ")))
    if sop_instance_uid is not None:
        parts.append(_cmd_element(0x1000, _even(sop_instance_uid.encode("ascii"), b"\0")))
    body = b"".join(parts)
    return _cmd_element(0x0000, struct.pack("<I", len(body))) + body


def p_data(context_id: int, command: bytes, peer_max: int) -> bytes:
    """A command set as P-DATA-TF PDUs, fragmented to the peer's maximum PDU length (0: none)."""
    room = peer_max - 6 if peer_max else len(command)
    room = max(room, 1)
    out = []
    for start in range(0, max(len(command), 1), room):
        frag = command[start:start + room]
        last = start + room >= len(command)
        pdv = _PDV.pack(len(frag) + 2, context_id, 0x03 if last else 0x01) + frag
        out.append(_pdu(P_DATA_TF, pdv))
    return b"".join(out)


# -- what the node plugs in ---------------------------------------------------------------------
@dataclass(frozen=True)
class StoreOutcome:
    status: int
    comment: str | None = None
    study_id: int | None = None


StoreFn = Callable[..., StoreOutcome]


@dataclass
class Config:
    ae_title: str
    abstract_syntaxes: frozenset[str]
    transfer_syntaxes: tuple[str, ...]  # in the order pynetdicom prefers them
    max_pdu: int
    idle_timeout_s: float
    allowed_calling_aes: frozenset[str]
    implementation_class_uid: str
    implementation_version_name: str
    store: StoreFn  # (dataset BytesIO, transfer_syntax, sop_class_uid, sop_instance_uid, calling_ae,
    #                  move_originator, implementation_class_uid, implementation_version_name)
    on_released: Callable[[set[int]], None]


# -- one association ---------------------------------------------------------------------------
class LeanAssociation:
    def __init__(self, server: "LeanServer", sock: socket.socket, address: Any) -> None:
        self.server = server
        self.sock = sock
        self.peer = str(address[0]) if isinstance(address, tuple) else str(address)
        self.connected_at = time.monotonic()
        self.established = False
        self.touched: set[int] = set()
        self._send_lock = threading.Lock()
        self._buf = bytearray(1 << 16)
        self._give_back: Callable[[], None] | None = None
        self._done = False
        self.peer_max = 0
        self.accepted: dict[int, tuple[str, str]] = {}  # context id -> (abstract, transfer syntax)

    # -- I/O ---------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        with self._send_lock:
            # a read leaves the socket's timeout at what its deadline had left: send under our own
            self.sock.settimeout(self.server.guard.limits.pdu_timeout_s)
            self.sock.sendall(data)

    def _fill(self, view: memoryview, deadline: float, then_within: float | None = None) -> float:
        """Fill `view` by `deadline`; with `then_within`, the deadline becomes the first byte's
        arrival + `then_within` once it has come. TimeoutError past the deadline, _Closed when
        the peer closes first. Returns when the first byte came."""
        n, end = 0, len(view)
        sock = self.sock
        first = 0.0
        while n < end:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            try:
                k = sock.recv_into(view[n:], min(end - n, 1 << 20))
            except socket.timeout:
                raise TimeoutError from None
            except OSError:
                raise _Closed from None
            if not k:
                raise _Closed
            if n == 0:
                first = time.monotonic()
                if then_within is not None:
                    deadline = first + then_within
            n += k
        return first

    def _read_pdu(self, wait_until: float) -> tuple[int, memoryview]:
        limits = self.server.guard.limits
        head = bytearray(6)
        hv = memoryview(head)
        first = self._fill(hv, wait_until, limits.pdu_timeout_s)
        kind, _, length = _HEAD.unpack(head)
        if kind not in (1, 2, 3, 4, 5, 6, 7):
            raise ProtocolError(ABORT_UNRECOGNISED_PDU, f"unknown PDU type 0x{kind:02X}")
        if kind == P_DATA_TF:
            cap = self.server.config.max_pdu or _guard.UNLIMITED_PDU_CAP
        elif kind in (A_ASSOCIATE_RQ, A_ASSOCIATE_AC):
            cap = _guard.MAX_ASSOCIATE_PDU
        else:
            cap = _guard.MAX_SMALL_PDU
        if length > cap:
            raise ProtocolError(ABORT_INVALID_PARAMETER, f"PDU type 0x{kind:02X} claims {length} bytes, over {cap}")
        if len(self._buf) < length:
            self._buf = bytearray(length)
        body = memoryview(self._buf)[:length]
        if length:
            self._fill(body, first + limits.pdu_timeout_s)  # the whole PDU within pdu_timeout_s of its first byte
        return kind, body

    # -- the association ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except TimeoutError:
            log.warning("%s: connection dropped", "association idle or a PDU stalled" if self.established
                        else "no association request in time")
            self._abort_quietly(ABORT_NOT_SPECIFIED)
        except ProtocolError as exc:
            log.warning("association aborted: %s", exc)
            self._abort_quietly(exc.reason)
        except (_Closed, OSError):  # the peer went, or the node stopping shut the socket
            pass
        except Exception as exc:  # never take the node down
            log.exception("association failed: %s", type(exc).__name__)
            self._abort_quietly(ABORT_NOT_SPECIFIED)
        finally:
            self._end()

    def _abort_quietly(self, reason: int) -> None:
        try:
            self._send(encode_abort(0x02, reason))
        except OSError:
            pass

    def abort(self) -> None:
        """From another thread (the node stopping): A-ABORT (service user) and shut the socket."""
        try:  # never waits: a peer that does not read must not hold up the node's stop
            self.sock.send(encode_abort(0x00, 0x00), socket.MSG_DONTWAIT)
        except OSError:
            pass
        self.drop()

    def drop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _end(self) -> None:
        if self._give_back is not None:
            self._give_back()
            self._give_back = None
        self.established = False
        try:
            self.sock.close()
        except OSError:
            pass
        self.server._ended(self)

    def _run(self) -> None:
        server, cfg = self.server, self.server.config
        kind, body = self._read_pdu(self.connected_at + server.guard.limits.artim_timeout_s)
        server._negotiating_done(self)
        if kind != A_ASSOCIATE_RQ:
            raise ProtocolError(ABORT_UNEXPECTED_PDU, f"PDU type 0x{kind:02X} before an association request")
        rq = parse_associate_rq(body)
        reject = self._decide(rq)
        if reject is not None:
            time.sleep(REJECT_DELAY_S)
            self._send(encode_associate_rj(*reject))
            return
        results = negotiate(rq.contexts, cfg.abstract_syntaxes, server.syntax_rank)
        self.accepted = {cid: (abstract, ts) for cid, result, abstract, ts in results if result == 0}
        self.peer_max = rq.max_length
        self.calling = rq.calling
        self.implementation_class_uid = rq.implementation_class_uid
        self.implementation_version_name = rq.implementation_version_name
        self._send(encode_associate_ac(rq, results, cfg.max_pdu, cfg.implementation_class_uid,
                                       cfg.implementation_version_name))
        self.established = True
        self._serve()

    def _decide(self, rq: AssociateRequest) -> tuple[int, int, int] | None:
        server, cfg = self.server, self.server.config
        if not rq.contexts:  # the guard's first check, as on pynetdicom's path
            return server.guard.admit(peer=self.peer, called=rq.called, calling=rq.calling, n_contexts=0)[0]
        if not rq.protocol_version & 0x0001:
            return REJECT_PROTOCOL_VERSION
        if rq.application_context != APPLICATION_CONTEXT:
            return REJECT_APPLICATION_CONTEXT
        calling = rq.calling
        if cfg.allowed_calling_aes and calling not in cfg.allowed_calling_aes:
            # the guard's identity check comes first, as on pynetdicom's path
            reject, give_back = server.guard.admit(peer=self.peer, called=rq.called, calling=calling,
                                                   n_contexts=len(rq.contexts), established=())
            if give_back is not None:
                give_back()
            return reject or _guard.REJECT_CALLING_AE
        with server.lock:
            reject, give_back = server.guard.admit(
                peer=self.peer, called=rq.called, calling=calling, n_contexts=len(rq.contexts),
                established=[a.peer for a in server.associations if a.established and a is not self])
            if reject is None:
                self._give_back = give_back
                self.established = True  # counted from now on, like pynetdicom's negotiating association
        return reject

    def _serve(self) -> None:
        server, cfg = self.server, self.server.config
        idle = cfg.idle_timeout_s
        command = bytearray()
        message: dict[int, bytes] | None = None  # a command waiting for its data set
        message_cx = 0
        dataset: io.BytesIO | None = None
        while True:
            kind, body = self._read_pdu(time.monotonic() + idle)
            if kind == P_DATA_TF:
                pos, end = 0, len(body)
                while pos < end:
                    if pos + 6 > end:
                        raise ProtocolError(ABORT_INVALID_PARAMETER, "a PDV item runs past its PDU")
                    length, cx, control = _PDV.unpack_from(body, pos)
                    if length < 2 or pos + 4 + length > end:
                        raise ProtocolError(ABORT_INVALID_PARAMETER, "a PDV item runs past its PDU")
                    fragment = body[pos + 6:pos + 4 + length]
                    pos += 4 + length
                    if cx not in self.accepted:
                        raise ProtocolError(ABORT_INVALID_PARAMETER, f"PDV on presentation context {cx}, not accepted")
                    if control & 0x01:  # command
                        if message is not None:
                            raise ProtocolError(ABORT_UNEXPECTED_PDU, "a command while a data set was due")
                        if command and cx != message_cx:
                            raise ProtocolError(ABORT_UNEXPECTED_PDU, "command fragments on two contexts")
                        message_cx = cx
                        command += fragment
                        if control & 0x02:
                            values = parse_command(command)
                            command = bytearray()
                            if _us(values, 0x0800, 0x0101) != 0x0101:
                                message, dataset = values, io.BytesIO()
                            else:
                                self._dispatch(values, None, cx)
                    else:  # data set
                        if message is None or dataset is None or cx != message_cx:
                            raise ProtocolError(ABORT_UNEXPECTED_PDU, "a data set fragment without its command")
                        dataset.write(fragment)
                        if control & 0x02:
                            values, ds = message, dataset
                            message, dataset = None, None
                            self._dispatch(values, ds, cx)
            elif kind == A_RELEASE_RQ:
                if self.touched:
                    try:
                        cfg.on_released(self.touched)
                    except Exception as exc:  # the quiet period still closes these studies
                        log.warning("cannot record release of %d studies: %s", len(self.touched), type(exc).__name__)
                self.touched = set()
                self._send(RELEASE_RP)
                return
            elif kind == A_ABORT:
                return  # nothing marked: the quiet period decides; a partial data set is dropped
            else:
                raise ProtocolError(ABORT_UNEXPECTED_PDU, f"PDU type 0x{kind:02X} in an association")

    def _dispatch(self, values: dict[int, bytes], dataset: io.BytesIO | None, cx: int) -> None:
        cfg = self.server.config
        field_ = _us(values, 0x0100)
        message_id = _us(values, 0x0110)
        sop_class = _cmd_text(values, 0x0002)
        if field_ == 0x0001:  # C-STORE-RQ
            sop_instance = _cmd_text(values, 0x1000)
            if dataset is None:
                status, comment = STATUS_CANNOT_UNDERSTAND, "cannot understand: C-STORE without a data set"
            else:
                out = cfg.store(dataset, self.accepted[cx][1], sop_class, sop_instance, self.calling,
                                _cmd_text(values, 0x1030), self.implementation_class_uid,
                                self.implementation_version_name)
                status, comment = out.status, out.comment
                if out.study_id is not None:
                    self.touched.add(out.study_id)
            rsp = response_command(0x8001, message_id, status, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                   comment=comment[:64] if (status and comment) else None)
        elif field_ == 0x0030:  # C-ECHO-RQ
            rsp = response_command(0x8030, message_id, 0x0000, sop_class_uid=sop_class or self.accepted[cx][0])
        elif field_ & 0x8000 or field_ == 0x0FFF:  # a response, or C-CANCEL: nothing to answer
            return
        else:
            log.warning("unsupported DIMSE command 0x%04X answered 0x%04X", field_, STATUS_UNRECOGNISED_OPERATION)
            rsp = response_command(field_ | 0x8000, message_id, STATUS_UNRECOGNISED_OPERATION,
                                   sop_class_uid=sop_class or None)
        self._send(p_data(cx, rsp, self.peer_max))


# -- the server --------------------------------------------------------------------------------
class LeanServer:
    """Accepts on `listener` (non-blocking, possibly shared with other receiving processes),
    one thread per connection. `shutdown()` stops accepting; `server_close()` closes the
    listener and the node-wide slots."""

    def __init__(self, listener: socket.socket, config: Config, guard: _guard.Guard, *,
                 board: Any = None, slots: Any = None) -> None:
        self.config = config
        self.guard = guard
        self.listener = listener
        self.board = board
        self.slots = slots
        if slots is not None:
            guard.share(slots)
        self.syntax_rank = {ts: i for i, ts in enumerate(config.transfer_syntaxes)}
        self.lock = threading.Lock()
        self.associations: set[LeanAssociation] = set()
        self._negotiating: dict[LeanAssociation, None] = {}
        self.server_address = listener.getsockname()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._acceptor_done = threading.Event()  # the acceptor of the moment saw the stop
        self._deferring_since = 0.0

    @property
    def active_associations(self) -> list[LeanAssociation]:
        with self.lock:
            return list(self.associations)

    def start(self) -> "LeanServer":
        self._thread = threading.Thread(target=self.serve_forever, name="priorwatch-lean-acceptor", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept one connection, hand the listener to a new thread, and serve that connection in
        this one (leader/follower): the thread start is off the connection's path, which is served
        by the thread that woke for it (no hand-off to another thread)."""
        try:
            while not self._stop.is_set():
                try:
                    ready, _, _ = select.select([self.listener, self._wake_r], [], [], 0.5)
                except (OSError, ValueError):
                    if self._stop.is_set():
                        return
                    raise
                if self.listener not in ready or self._stop.is_set():
                    continue
                if self.board is not None and self._defer():
                    continue
                try:
                    sock, address = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # another receiving process took it
                except OSError as exc:
                    if self._stop.is_set():
                        return
                    log.warning("accept failed: %s", os.strerror(exc.errno or 0))
                    time.sleep(0.01)
                    continue
                try:
                    assoc = self._start(sock, address)
                    _thread.start_new_thread(self.serve_forever, ())  # the next acceptor
                except Exception as exc:  # this thread stays the acceptor; the connection goes
                    log.error("cannot serve a new connection: %s", type(exc).__name__)
                    self._drop_new(sock)
                    continue
                assoc.run()
                return
        finally:
            if self._stop.is_set():
                self._acceptor_done.set()

    def _defer(self) -> bool:
        """Let a less busy receiving process take the connection, for at most DEFER_S."""
        with self.lock:
            self.board.set(len(self.associations))
        if self.board.least_loaded():
            self._deferring_since = 0.0
            return False
        now = time.monotonic()
        if not self._deferring_since:
            self._deferring_since = now
        if now - self._deferring_since < DEFER_S:
            time.sleep(0.001)
            return True
        self._deferring_since = 0.0
        return False

    def _start(self, sock: socket.socket, address: Any) -> LeanAssociation:
        sock.setblocking(True)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc = LeanAssociation(self, sock, address)
        limits = self.guard.limits
        victims: list[LeanAssociation] = []
        with self.lock:
            self.associations.add(assoc)
            self._negotiating[assoc] = None
            if len(self._negotiating) > min(limits.max_pending, limits.max_pending_per_peer):
                pending = [(a.connected_at, a.peer, a) for a in self._negotiating]
                victims = self.guard.evict_oldest(pending, assoc.peer)
                for v in victims:
                    self._negotiating.pop(v, None)  # counted once: its thread ends on its own
            if self.board is not None:
                self.board.set(len(self.associations))
        for victim in victims:
            victim.drop()
        return assoc

    def _drop_new(self, sock: socket.socket) -> None:
        with self.lock:
            for a in [a for a in self.associations if a.sock is sock]:
                self.associations.discard(a)
                self._negotiating.pop(a, None)
        try:
            sock.close()
        except OSError:
            pass

    def _negotiating_done(self, assoc: LeanAssociation) -> None:
        with self.lock:
            self._negotiating.pop(assoc, None)

    def _ended(self, assoc: LeanAssociation) -> None:
        with self.lock:
            self.associations.discard(assoc)
            self._negotiating.pop(assoc, None)
            if self.board is not None:
                self.board.set(len(self.associations))

    def shutdown(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass
        if self._thread is not None:
            self._acceptor_done.wait(5.0)

    def server_close(self) -> None:
        try:
            self.listener.close()
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.slots is not None:
            self.slots.close()


DEFER_S = 0.02  # as receivers.SharedListenerServer.DEFER_S
# A-ASSOCIATE-RJ goes out this long after the request. pynetdicom 3.0's requestor, after sending its
# request, checks in its own thread that the connection is still up (acse._negotiate_as_requestor)
# before it reads the answer; its DUL thread closes the connection as soon as it reads an RJ. An RJ
# answered at once could beat that check, and the requestor reported a dropped connection instead of
# the reject (seen here in pynetdicom-SCU tests, 2 of 3 full runs, when the accepting thread itself
# answered). Rejects are rare; the wait costs no CPU and holds no slot.
REJECT_DELAY_S = 0.02

"""Latency fixes for pynetdicom's network loop, measured and applied once per process.

pynetdicom 3.0 moves every message between two polling threads: the DUL reactor sleeps 1 ms
whenever it finds nothing to do, and the association reactor sleeps 1 ms on *every* turn
before it looks for a decoded DIMSE message. A synchronous C-STORE (request in, response
out) therefore waits on both sleeps, and the association server deep-copies every supported
presentation context (170 storage classes x 45 transfer syntaxes, each UID re-validated by a
regular expression) for each new association, in the thread that accepts connections.

Measured here (bare SCP whose handler only reads the data set, DCMTK storescu, 200 x 0.45 MB
on one association): 240 -> 440 instances/s; a one-instance association 108 -> 45 ms.

What changes, and only that:
- the DUL reactor waits in `select()` on its socket and on a wake-up pipe written by
  `send_pdu` / `kill_dul`, instead of sleeping (at most `IDLE_WAIT_S` so its timers still run);
- the association reactor blocks on the DIMSE queue for at most `ASSOC_WAIT_S` instead of
  sleeping 1 ms and then polling; release, abort and timeout checks are as before;
- a complete C-STORE request to an acceptor is served in the DUL thread that decoded it,
  not queued for the association thread (two thread hand-offs per instance fewer; with four
  associations in one process a no-op SCP went 480-560 -> 700-790 instances/s);
- the server's context list copies contexts without re-validating their immutable UIDs, and
  pynetdicom's UID validator (`_config.VALIDATORS["UI"]`, its documented hook) remembers its
  answers: an association request names the same ~200 UIDs every time (a one-instance
  association: 21 -> 15 ms of CPU);
- association negotiation (`pdu_items`, `pdu_primitives`, `presentation`) converts and checks
  each UID string once per process (`_set_uid_memo`, `_add_transfer_syntax`), and the node binds
  pynetdicom's standard logging handlers only where its logger prints them
  (`skip_unlogged_handlers`): a DCMTK storescu request proposes ~130 contexts, converted,
  validated and formatted into discarded log text on every association (issue 32: node CPU per
  2-instance study 25.5 -> 16.2 ms, same run, loaded machine; Orthanc 7.8);
- presentation context items and their syntax sub-items are encoded and decoded field by
  field (`_ITEM_CODECS`), not through pynetdicom's generic per-item codec lists;
- a C-STORE request's command set is read directly into its primitive
  (`store_request_primitive`), not through a pydicom Dataset (~15 % of the node's CPU per
  stored instance);
- a C-STORE response's command set is encoded directly (`store_response_command`, byte for
  byte pynetdicom's), not through a pydicom Dataset encoded twice (~30 % of the node's CPU
  per stored instance);
- `AssociationSocket.recv` reads into one buffer, up to 1 MiB per call (4 KiB stock);
- every association socket sets TCP_NODELAY: a P-DATA PDU's last partial segment otherwise
  waits for the peer's delayed ACK (40 ms) - a pynetdicom SCU sending to a pynetdicom SCP on
  loopback took 50 ms per C-STORE, stock or not.

Robustness (issue 14, with `dicom_node.guard`):
- a PDU is read against a deadline from its first byte (`Limits.pdu_timeout_s`, else the
  association's network timeout): a stalled header or body drops the connection;
- a PDU claiming more than we negotiated (or than an association PDU needs) is aborted
  before its body is read, and a body is read into one buffer sized by the checked length;
- an acceptor's A-ASSOCIATE-RQ goes through its AE's `Guard` first (established-only
  association limits, empty requests rejected);
- a TLS server socket does its handshake in the association's own thread, under the same
  read deadline, not in the thread that accepts connections (a silent TLS client stalled
  every new connection); the DUL's wait does not sleep on bytes an SSL socket already holds.

The loops mirror pynetdicom 3.0.x line by line apart from the waits; `apply()` refuses any
other minor version (stock behaviour, with a warning) rather than guess at its internals.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from io import BytesIO
from typing import Any, cast

import pynetdicom
from pydicom import dataset as _pydicom_dataset
from pydicom.uid import UID
from pynetdicom import _config as _pn_config
from pynetdicom import pdu_items as _pn_pdu_items
from pynetdicom import pdu_primitives as _pn_pdu_primitives
from pynetdicom import presentation as _pn_presentation
from pynetdicom import utils as _pn_utils
from pynetdicom import acse as _acse
from pynetdicom import association as _association
from pynetdicom import dimse as _dimse
from pynetdicom import dimse_messages as _dimse_messages
from pynetdicom import dul as _dul
from pynetdicom import evt
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationServer, AssociationSocket, ThreadedAssociationServer

from dicom_node import guard as _guard

log = logging.getLogger(__name__)

TESTED_VERSIONS = ("3.0.",)
IDLE_WAIT_S = 0.01
ASSOC_WAIT_S = 0.005
# A requestor's own thread pauses its reactor before each request and waits until it is
# paused: keep that as quick as pynetdicom's 1 ms sleep.
REQUESTOR_WAIT_S = 0.001
# PDU read deadline where no Guard sets one and the association has no network timeout.
DEFAULT_PDU_TIMEOUT_S = 60.0
# A body up to this is read into one buffer allocated at once; beyond it (only where we
# negotiated no maximum) the buffer grows as bytes arrive, so a false claim costs nothing.
PREALLOC_MAX = 16 << 20
# Distinct UID strings whose conversion is remembered: a sender names the same ~400 UIDs in
# every association request; past this many (a peer inventing UIDs) new ones are not kept.
UID_MEMO_MAX = 8192

_applied = False
_lock = threading.Lock()


def apply() -> bool:
    """Install the fixes (idempotent). False, and stock pynetdicom, on an untested version."""
    global _applied
    with _lock:
        if _applied:
            return True
        if not pynetdicom.__version__.startswith(TESTED_VERSIONS):
            log.warning("pynetdicom %s is not a tested version: using its stock network loop", pynetdicom.__version__)
            return False
        AssociationSocket.recv = _recv_large  # type: ignore[method-assign]
        AssociationSocket.__init__ = _socket_init  # type: ignore[method-assign]
        AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
        AssociationServer.__init__ = _server_init  # type: ignore[method-assign]
        _dul.DULServiceProvider.run_reactor = _dul_run_reactor  # type: ignore[method-assign]
        _dul.DULServiceProvider._read_pdu_data = _read_pdu_data  # type: ignore[method-assign]
        _acse.ACSE._negotiate_as_acceptor = _negotiate_as_acceptor  # type: ignore[method-assign]
        AssociationServer.get_request = _get_request  # type: ignore[method-assign]
        AssociationServer.service_actions = _service_actions  # type: ignore[method-assign]
        ThreadedAssociationServer.process_request = _process_request  # type: ignore[method-assign]
        _dul.DULServiceProvider.send_pdu = _send_pdu  # type: ignore[method-assign]
        _dul.DULServiceProvider.kill_dul = _kill_dul  # type: ignore[method-assign]
        _association.Association._run_reactor = _assoc_run_reactor  # type: ignore[method-assign]
        _dimse.DIMSEServiceProvider.receive_primitive = _receive_primitive  # type: ignore[method-assign]
        _dimse.DIMSEServiceProvider.send_msg = _send_msg  # type: ignore[method-assign]
        for cls, (encode, decode) in _ITEM_CODECS.items():
            cls.encode, cls.decode = encode, decode  # type: ignore[method-assign]
        _pn_config.VALIDATORS["UI"] = functools.lru_cache(maxsize=4096)(_pn_config.VALIDATORS["UI"])
        # AE titles likewise: ~15 checks of the same two titles per association (a pure function
        # of a str: length, ASCII, no control characters).
        _pn_config.VALIDATORS["AE"] = functools.lru_cache(maxsize=1024)(_pn_config.VALIDATORS["AE"])
        # Association negotiation only: DIMSE messages carry a new SOP Instance UID each.
        for module in (_pn_pdu_items, _pn_pdu_primitives, _pn_presentation):
            module.set_uid = _set_uid_memo  # type: ignore[attr-defined]
        _pn_presentation.PresentationContext.add_transfer_syntax = _add_transfer_syntax  # type: ignore[method-assign]
        _applied = True
        return True


def applied() -> bool:
    return _applied


def skip_unlogged_handlers() -> None:
    """Bind none of pynetdicom's standard logging handlers to servers made from now on, when
    its logger would drop what they write anyway (`priorwatch.log` keeps it at WARNING: they
    log at DEBUG/INFO). They format every proposed context of an association request into
    text before the logger discards it (a DCMTK storescu request proposes ~130 contexts:
    ~12 % of an association's CPU here). Set before `AE.start_server`, which binds them."""
    quiet = not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
    _pn_config.LOG_HANDLER_LEVEL = "none" if quiet else "standard"


# -- UIDs ---------------------------------------------------------------------------------------
_stock_set_uid = _pn_utils.set_uid
_uid_memo: dict[tuple[Any, bool, bool], Any] = {}


def _set_uid_memo(value: Any, name: str, allow_empty: bool = True, allow_none: bool = True,
                  validate: bool = True) -> Any:
    """pynetdicom's `set_uid`, remembering its answer per input string: decoding an association
    request converts, validates (two regular expressions) and checks conformance of each of its
    ~400 UIDs, the same ones every time (`UID_MEMO_MAX` bounds the memo). The same UID object
    is returned for the same string (a `str` subclass, not changed by pynetdicom). Errors,
    empty-value refusals and UIDs that carry a private transfer-syntax encoding go through the
    stock function every time."""
    if not (type(value) is bytes or type(value) is str or (
            isinstance(value, str) and not hasattr(value, "_PRIVATE_TS_ENCODING"))):
        return _stock_set_uid(value, name, allow_empty, allow_none, validate)
    key = (value, validate, allow_empty)
    uid = _uid_memo.get(key)
    if uid is None:
        uid = _stock_set_uid(value, name, allow_empty, allow_none, validate)  # raises as before
        if uid is not None and len(_uid_memo) < UID_MEMO_MAX:
            _uid_memo[key] = uid
    return uid


_stock_add_transfer_syntax = _pn_presentation.PresentationContext.add_transfer_syntax
_quiet_syntaxes: dict[str, Any] = {}  # transfer syntax string -> its UID, for those that pass every check


def _add_transfer_syntax(self: Any, syntax: Any) -> None:
    """pynetdicom's `PresentationContext.add_transfer_syntax`, skipping its checks (UID
    validity, conformance twice, "is a transfer syntax") for a string that has already passed
    them all without a warning; anything else takes the stock path, warnings included."""
    if not isinstance(syntax, str) or hasattr(syntax, "_PRIVATE_TS_ENCODING"):
        _stock_add_transfer_syntax(self, syntax)
        return
    uid = _quiet_syntaxes.get(syntax)
    if uid is None:
        _stock_add_transfer_syntax(self, syntax)
        uid = UID(syntax)
        if (uid and _pn_presentation.validate_uid(uid) and uid.is_valid and (uid.is_private or uid.is_transfer_syntax)
                and len(_quiet_syntaxes) < UID_MEMO_MAX):
            _quiet_syntaxes[syntax] = uid
        return
    if uid not in self._transfer_syntax:
        self._transfer_syntax.append(uid)


# -- socket reads ------------------------------------------------------------------------------
def _recv_large(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """Same contract as the stock `recv`: block until `nr_bytes` are read, or return what was
    read when the peer closes. One buffer, no 4 KiB reads and bytearray extends (~1,800 calls
    and copies for a 7 MB P-DATA PDU; we accept PDUs of any size)."""
    sock = cast(socket.socket, self.socket)
    buf = bytearray(nr_bytes)
    view = memoryview(buf)
    n = 0
    try:
        while n < nr_bytes:
            k = sock.recv_into(view[n:], min(nr_bytes - n, 1 << 20))
            if not k:
                break
            n += k
    finally:
        view.release()
    if n < nr_bytes:
        del buf[n:]
    return buf


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


_stock_socket_init = AssociationSocket.__init__
_stock_create_socket = AssociationSocket._create_socket


def _socket_init(self: AssociationSocket, *args: Any, **kwargs: Any) -> None:
    _stock_socket_init(self, *args, **kwargs)
    _nodelay(cast(socket.socket, self.socket))


def _create_socket(self: AssociationSocket, address: Any) -> socket.socket:
    sock = _stock_create_socket(self, address)
    _nodelay(sock)
    return sock


# -- presentation contexts ---------------------------------------------------------------------
class ReadOnlyContext(_pn_presentation.PresentationContext):
    """A server's supported presentation context, shared by all its associations: any write
    raises instead of reaching the other associations."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a supported presentation context is shared by every association: {name} is read-only")


class SharedUIDContexts(list):  # type: ignore[type-arg]
    """The server's supported contexts, one read-only copy shared by every association.

    pynetdicom 3.0.4 deep-copies them for each new association (~170 storage classes x ~45
    transfer syntaxes: 9 % of the node's GIL time per 2-instance study, py-spy, issue 32), but
    its negotiation (`presentation.negotiate_as_acceptor`) only reads them and builds new
    context objects for the reply. Shared, they are `ReadOnlyContext`s: a write raises."""

    def __init__(self, contexts: Any = ()) -> None:
        super().__init__(_read_only(cx) for cx in contexts)
        # As pynetdicom's negotiation indexes them (the last of one abstract syntax wins).
        self.by_syntax = {cx.abstract_syntax: cx for cx in self}

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        out = AssociationContexts(self)  # a new list (a handler may append to its own), the same contexts
        out.by_syntax = self.by_syntax
        return out


class AssociationContexts(list):  # type: ignore[type-arg]
    """One association's supported contexts (shared `ReadOnlyContext`s), with the server's
    index by abstract syntax: negotiation is handed only those the requestor proposes."""

    by_syntax: dict[Any, Any]


def _read_only(cx: Any) -> Any:
    if isinstance(cx, ReadOnlyContext):
        return cx
    new = ReadOnlyContext.__new__(ReadOnlyContext)
    object.__getattribute__(new, "__dict__").update(cx.__dict__)
    new.__dict__["_transfer_syntax"] = list(cx._transfer_syntax)  # not the AE's own list
    return new


_stock_server_init = AssociationServer.__init__


def _server_init(self: AssociationServer, *args: Any, **kwargs: Any) -> None:
    _stock_server_init(self, *args, **kwargs)
    self.contexts = SharedUIDContexts(self.contexts)


# -- presentation context items -----------------------------------------------------------------
# pynetdicom encodes and decodes every PDU item through a generic loop over a list of field
# codecs that each item builds anew per call; an association request from DCMTK storescu holds
# ~130 presentation contexts (~530 items with their sub-items), and so does our answer. These
# four item kinds are coded here field by field with the same helpers, byte for byte the same.
_ITEM_HEAD = struct.Struct(">BBH")  # item type, reserved, item length
_CONTEXT_HEAD = struct.Struct(">BBHBBBB")  # ... context id, reserved, result/reason (AC) or reserved, reserved


def _context_rq_encode(self: Any) -> bytes:
    return _CONTEXT_HEAD.pack(self.item_type, 0, self.item_length, self.presentation_context_id, 0, 0, 0) + \
        self._wrap_encode_items(self.abstract_transfer_syntax_sub_items)


# A requestor proposes the same contexts in every association (DCMTK storescu: ~130, each an
# abstract syntax and its transfer syntaxes): their sub-items are decoded once per distinct byte
# string and shared; pynetdicom only reads them (to_primitive copies their UIDs into new
# PresentationContext objects). ~12 % of the node's CPU per storescu study (py-spy, issue 32).
_sub_items_memo: dict[bytes, tuple[Any, ...]] = {}


def _context_rq_decode(self: Any, bytestream: bytes) -> None:
    self.presentation_context_id = self._wrap_unpack(bytestream[4:5], _pn_pdu_items.UNPACK_UCHAR)
    key = bytes(bytestream[8:])
    items = _sub_items_memo.get(key)
    if items is None:
        items = tuple(self._wrap_generate_items(key))
        if len(_sub_items_memo) < UID_MEMO_MAX and all(
                type(i) in (_pn_pdu_items.AbstractSyntaxSubItem, _pn_pdu_items.TransferSyntaxSubItem) for i in items):
            _sub_items_memo[key] = items
    self.abstract_transfer_syntax_sub_items = list(items)


def _context_ac_encode(self: Any) -> bytes:
    return _CONTEXT_HEAD.pack(self.item_type, 0, self.item_length, self.presentation_context_id, 0,
                              self.result_reason, 0) + self._wrap_encode_items(self.transfer_syntax_sub_item)


def _context_ac_decode(self: Any, bytestream: bytes) -> None:
    self.presentation_context_id = self._wrap_unpack(bytestream[4:5], _pn_pdu_items.UNPACK_UCHAR)
    self.result_reason = self._wrap_unpack(bytestream[6:7], _pn_pdu_items.UNPACK_UCHAR)
    self.transfer_syntax_sub_item = self._wrap_generate_items(bytestream[8:])


def _abstract_encode(self: Any) -> bytes:
    return _ITEM_HEAD.pack(self.item_type, 0, self.item_length) + self._wrap_encode_str(self.abstract_syntax_name)


def _abstract_decode(self: Any, bytestream: bytes) -> None:
    self.abstract_syntax_name = self._wrap_uid_bytes(bytestream[4:])


def _transfer_encode(self: Any) -> bytes:
    return _ITEM_HEAD.pack(self.item_type, 0, self.item_length) + self._wrap_encode_str(self.transfer_syntax_name)


def _transfer_decode(self: Any, bytestream: bytes) -> None:
    self.transfer_syntax_name = self._wrap_uid_bytes(bytestream[4:])


_ITEM_CODECS: dict[type, tuple[Any, Any]] = {
    _pn_pdu_items.PresentationContextItemRQ: (_context_rq_encode, _context_rq_decode),
    _pn_pdu_items.PresentationContextItemAC: (_context_ac_encode, _context_ac_decode),
    _pn_pdu_items.AbstractSyntaxSubItem: (_abstract_encode, _abstract_decode),
    _pn_pdu_items.TransferSyntaxSubItem: (_transfer_encode, _transfer_decode),
}


# -- DUL reactor -------------------------------------------------------------------------------
_stock_send_pdu = _dul.DULServiceProvider.send_pdu
_stock_kill_dul = _dul.DULServiceProvider.kill_dul


def _wake(dul: _dul.DULServiceProvider) -> None:
    fd = getattr(dul, "_pw_wake_w", None)
    if fd is not None:
        try:
            os.write(fd, b"\0")
        except OSError:  # pipe full (already awake) or closed (reactor gone)
            pass


def _send_pdu(self: _dul.DULServiceProvider, primitive: Any) -> None:
    _stock_send_pdu(self, primitive)
    _wake(self)


def _kill_dul(self: _dul.DULServiceProvider) -> None:
    _stock_kill_dul(self)
    _wake(self)


def _idle_wait(self: _dul.DULServiceProvider) -> None:
    """Wait until the peer sends, a primitive is queued, or IDLE_WAIT_S passes."""
    wake_r = cast(int, self._pw_wake_r)  # type: ignore[attr-defined]
    assoc_sock = self.socket
    raw = getattr(assoc_sock, "socket", None)
    if isinstance(raw, ssl.SSLSocket):
        try:
            if raw.pending():  # decrypted bytes already in hand: select() would not see them
                return
        except (OSError, ValueError):
            pass
    fds: list[Any] = [wake_r]
    if raw is not None and getattr(assoc_sock, "_is_connected", False):
        fds.append(raw)
    try:
        ready, _, _ = select.select(fds, [], [], IDLE_WAIT_S)
    except (OSError, ValueError):  # socket closed under us: the next turn sees it
        time.sleep(self._run_loop_delay)
        return
    if wake_r in ready:
        try:
            while os.read(wake_r, 4096):
                pass
        except OSError:
            pass


class _UserQueue(queue.Queue):  # type: ignore[type-arg]
    """The DUL's queue to its association; an acceptor's reactor, waiting on its DIMSE queue, is
    nudged when something lands here (a release or abort request), instead of seeing it only
    when its wait runs out: a released association is answered at once (was up to 5 ms)."""

    def __init__(self, dul: _dul.DULServiceProvider) -> None:
        super().__init__()
        self._dul = dul

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        assoc = self._dul.assoc
        if assoc.is_acceptor and assoc.is_established and not assoc._is_paused:
            assoc.dimse.msg_queue.put((None, None))  # read and skipped by _assoc_run_reactor


def _dul_run_reactor(self: _dul.DULServiceProvider) -> None:
    if self.to_user_queue.empty():
        self.to_user_queue = _UserQueue(self)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    self._pw_wake_r, self._pw_wake_w = wake_r, wake_w  # type: ignore[attr-defined]
    try:
        _dul_loop(self)
    finally:
        self._pw_wake_w = None  # type: ignore[attr-defined]
        os.close(wake_w)
        os.close(wake_r)


def _dul_loop(self: _dul.DULServiceProvider) -> None:
    # pynetdicom 3.0.4 DULServiceProvider.run_reactor, with `_idle_wait` for `time.sleep`.
    self._idle_timer.start()
    self.socket = cast(AssociationSocket, self.socket)
    sleep = False
    while True:
        if not self.assoc._dul_ready.is_set():
            self.assoc._dul_ready.set()
            sleep = True
        if sleep:
            _idle_wait(self)
        if self._kill_thread:
            break
        if self.artim_timer.expired:
            self.event_queue.put("Evt18")
        try:
            if self._process_recv_primitive():
                pass
            elif self._is_transport_event():
                self._idle_timer.restart()
        except Exception as exc:
            _dul.LOGGER.error("Exception in DUL.run(), aborting association")
            _dul.LOGGER.exception(exc)
            abort_pdu = A_ABORT_RQ()
            abort_pdu.source = 0x02
            abort_pdu.reason_diagnostic = 0x00
            self.socket.send(abort_pdu.encode())
            self.assoc.is_aborted = True
            self.assoc.is_established = False
            self.assoc._kill = True
            self._kill_thread = True
            return
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            sleep = True
            continue
        self.state_machine.do_action(event)
        sleep = False


# -- association reactor -----------------------------------------------------------------------
def _assoc_run_reactor(self: _association.Association) -> None:
    # pynetdicom 3.0.4 Association._run_reactor, with a bounded blocking get for
    # `time.sleep(0.001)` + `get_msg(block=False)`.
    self._is_paused = False
    while not self._kill:
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self._is_paused = False
        try:
            context_id, msg = self.dimse.msg_queue.get(timeout=ASSOC_WAIT_S if self.is_acceptor else REQUESTOR_WAIT_S)
        except queue.Empty:
            context_id, msg = None, None
        if msg is not None and not self._reactor_checkpoint.is_set():
            # A thread paused the reactor while we waited (it may have read `_is_paused` just
            # before we cleared it): what we took is the reply it waits for. Put it back first.
            _push_front(self.dimse.msg_queue, (context_id, msg))
            continue
        if msg:
            self._serve_request(msg, cast(int, context_id))

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            _association.LOGGER.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            log_msg = "Association Aborted"
            if self.acse.is_aborted("a-p-abort"):
                log_msg += " (A-P-ABORT)"
            _association.LOGGER.info(log_msg)
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired():
            _association.LOGGER.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return



# -- C-STORE requests served where they are decoded ----------------------------------------------
def _receive_primitive(self: _dimse.DIMSEServiceProvider, primitive: Any) -> None:
    # pynetdicom 3.0.4 DIMSEServiceProvider.receive_primitive, except that a complete C-STORE
    # request to an acceptor is served right here, in the DUL thread, instead of being queued
    # for the association thread: C-STORE is answered before the peer sends the next request
    # (no asynchronous operations are negotiated), so the DUL has nothing else to read
    # meanwhile, and two thread hand-offs per instance go.
    # A C-STORE request's command set is read by `store_request_primitive` (see there).
    if self.message is None:
        self.message = _dimse.DIMSEMessage()
    fast = not _pn_config.STORE_RECV_CHUNKED_DATASET and not self.assoc.get_handlers(evt.EVT_DIMSE_RECV)
    complete, d_primitive = (_decode_store_fast(self.message, primitive) if fast
                             else (self.message.decode_msg(primitive, self.assoc), None))
    if not complete:
        return
    evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": self.message})
    context_id = cast(int, self.message.context_id)
    try:
        if d_primitive is None:
            d_primitive = self.message.message_to_primitive()
        else:
            d_primitive.DataSet = self.message.data_set
            d_primitive._context_id = context_id
            d_primitive._dataset_path = d_primitive._dataset_file = None
    except Exception as exc:
        _dimse.LOGGER.error("Received an invalid DIMSE message")
        _dimse.LOGGER.exception(exc)
        self.dul.event_queue.put("Evt19")
        return
    # Fix for memory leak, pynetdicom issue #41: ready for the next message
    self.message.encoded_command_set = BytesIO()
    self.message.data_set = BytesIO()
    if isinstance(d_primitive, _dimse.C_STORE) and self.assoc.is_acceptor and d_primitive.is_valid_request:
        self.assoc._serve_request(d_primitive, context_id)
    elif isinstance(d_primitive, _dimse.C_CANCEL) and len(self.cancel_req) < 10:
        self.cancel_req[cast(int, d_primitive.MessageIDBeingRespondedTo)] = d_primitive
    elif isinstance(d_primitive, _dimse.N_EVENT_REPORT) and d_primitive.is_valid_request:
        threading.Thread(target=self.assoc._serve_request, args=(d_primitive, context_id)).start()
    else:
        self.msg_queue.put((context_id, d_primitive))


# -- C-STORE requests read directly -------------------------------------------------------------
_STORE_RQ_TAGS = frozenset({0x0000, 0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000})  # (0000,eeee)


def store_request_primitive(command: bytes) -> Any | None:
    """The C_STORE primitive of an encoded C-STORE-RQ command set (Implicit VR Little Endian),
    with the values pynetdicom's pydicom path gives it (through the primitive's own checking
    setters), or None where that path must read it: any other command, an element a plain
    request does not carry (Move Originator, a private tag), a value of unexpected length.

    pynetdicom decodes each command set into a pydicom Dataset and copies it element by element
    into the primitive: ~15 % of the node's CPU per stored instance here."""
    values: dict[int, bytes] = {}
    pos, end = 0, len(command)
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = _CMD_ELEMENT.unpack_from(command, pos)
        pos += 8
        if group != 0x0000 or element not in _STORE_RQ_TAGS or length == 0xFFFFFFFF or pos + length > end:
            return None
        values[element] = command[pos:pos + length]
        pos += length
    us = {e: values.get(e, b"") for e in (0x0100, 0x0110, 0x0700, 0x0800)}
    if any(len(v) != 2 for v in us.values()) or _US.unpack(us[0x0100])[0] != 0x0001:
        return None
    if 0x0002 not in values or 0x1000 not in values:
        return None
    p = _dimse.C_STORE()
    p.AffectedSOPClassUID = values[0x0002].decode("ascii").rstrip("\0 ")
    p.MessageID = _US.unpack(us[0x0110])[0]
    p.Priority = _US.unpack(us[0x0700])[0]
    p.AffectedSOPInstanceUID = values[0x1000].decode("ascii").rstrip("\0 ")
    p._pw_has_dataset = _US.unpack(us[0x0800])[0] != 0x0101  # type: ignore[attr-defined]
    return p


def _decode_store_fast(message: Any, primitive: Any) -> tuple[bool, Any | None]:
    """pynetdicom 3.0.4 `DIMSEMessage.decode_msg` (without chunked receive), reading a C-STORE
    request's command set with `store_request_primitive`: (complete, primitive or None). With
    None, the message is the one pynetdicom's own decode makes, for `message_to_primitive`.
    A request read directly waits on the message (`_pw_request`) for its data set fragments."""
    if primitive.__class__ != P_DATA or primitive is None:
        return False, None
    for context_id, data in primitive.presentation_data_value_list:
        control_header_byte = data[0]
        if control_header_byte & 1:  # command fragment
            message.encoded_command_set.write(data[1:])
            if control_header_byte & 2:  # the last one
                message.context_id = context_id
                try:
                    found = store_request_primitive(message.encoded_command_set.getvalue())
                except (UnicodeDecodeError, ValueError, TypeError):
                    found = None  # pynetdicom's path reads it (and says what is wrong)
                message._pw_request = found
                if found is not None:
                    message.__class__ = _dimse_messages.C_STORE_RQ
                    message.command_set = _pydicom_dataset.Dataset()  # read nowhere else: no handler
                    if not found._pw_has_dataset:
                        message._pw_request = None
                        return True, found
                    continue
                message.command_set = _dimse_messages.decode(message.encoded_command_set, True, True)
                message.__class__ = _dimse_messages._MESSAGE_TYPES[cast(int, message.command_set.CommandField)][1]
                if message.command_set.CommandDataSetType == 0x0101:
                    return True, None
        else:
            cast(BytesIO, message.data_set).write(data[1:])
            if control_header_byte & 2 != 0:
                found = getattr(message, "_pw_request", None)
                message._pw_request = None
                return True, found
    return False, None


# -- C-STORE responses encoded directly -----------------------------------------------------------
_stock_send_msg = _dimse.DIMSEServiceProvider.send_msg
_CMD_ELEMENT = struct.Struct("<HHI")  # Implicit VR Little Endian: group, element, value length
_US = struct.Struct("<H")


def _cmd_element(element: int, value: bytes) -> bytes:
    return _CMD_ELEMENT.pack(0x0000, element, len(value)) + value


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def store_response_command(primitive: Any) -> bytes | None:
    """The encoded command set of a C-STORE response, byte for byte what pynetdicom writes
    through a pydicom Dataset (Implicit VR Little Endian, ascending tags, group length first),
    or None where that path must write it (an Offending Element, text that is not ASCII).

    pynetdicom builds a Dataset per response and encodes it twice (once to measure the group
    length): ~30 % of the node's CPU per stored instance here."""
    if primitive.OffendingElement is not None:
        return None
    parts = []
    try:
        if primitive.AffectedSOPClassUID is not None:
            parts.append(_cmd_element(0x0002, _even(str(primitive.AffectedSOPClassUID).encode("ascii"), b"\0")))
        parts.append(_cmd_element(0x0100, _US.pack(0x8001)))  # C-STORE-RSP
        parts.append(_cmd_element(0x0120, _US.pack(primitive.MessageIDBeingRespondedTo)))
        parts.append(_cmd_element(0x0800, _US.pack(0x0101)))  # no data set
        parts.append(_cmd_element(0x0900, _US.pack(primitive.Status)))
        if primitive.ErrorComment is not None:
            parts.append(_cmd_element(0x0902, _even(str(primitive.ErrorComment).encode("ascii"), b" ")))
        if primitive.AffectedSOPInstanceUID is not None:
            parts.append(_cmd_element(0x1000, _even(str(primitive.AffectedSOPInstanceUID).encode("ascii"), b"\0")))
    except (UnicodeEncodeError, struct.error, TypeError):
        return None
    body = b"".join(parts)
    return _cmd_element(0x0000, struct.pack("<I", len(body))) + body


def _send_msg(self: _dimse.DIMSEServiceProvider, primitive: Any, context_id: int) -> None:
    # pynetdicom 3.0.4 DIMSEServiceProvider.send_msg, except that a C-STORE response whose
    # command fits one PDV, with no EVT_DIMSE_SENT handler to hand a DIMSEMessage to, is encoded
    # by `store_response_command` and sent as the one P-DATA that pynetdicom would send.
    if (isinstance(primitive, _dimse.C_STORE) and primitive.MessageIDBeingRespondedTo is not None
            and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT)):
        command = store_response_command(primitive)
        if command is not None and (not self.maximum_pdu_size or len(command) <= self.maximum_pdu_size - 6):
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((context_id, b"\x03" + command))  # command, last fragment
            self.dul.send_pdu(pdata)
            return
    _stock_send_msg(self, primitive, context_id)


def _push_front(q: queue.Queue[Any], item: Any) -> None:
    with q.mutex:
        q.queue.appendleft(item)  # type: ignore[attr-defined]
        q.unfinished_tasks += 1
        q.not_empty.notify()


# -- PDU reads with a deadline and a length cap --------------------------------------------------
def _pdu_cap(assoc: _association.Association, pdu_type: int) -> int:
    """The longest PDU of `pdu_type` we accept on `assoc`."""
    if pdu_type == 0x04:  # P-DATA-TF: what we told the peer we receive
        ours = (assoc.acceptor if assoc.is_acceptor else assoc.requestor).maximum_length
        return int(ours) if ours else _guard.UNLIMITED_PDU_CAP
    if pdu_type in (0x01, 0x02):
        return _guard.MAX_ASSOCIATE_PDU
    return _guard.MAX_SMALL_PDU


def _pdu_timeout(dul: _dul.DULServiceProvider) -> float:
    g = _guard.guard_of(dul.assoc.ae) if dul.assoc.is_acceptor else None
    if g is not None:
        return g.limits.pdu_timeout_s
    return float(dul.assoc.network_timeout or DEFAULT_PDU_TIMEOUT_S)


def _fill(sock: socket.socket, buf: bytearray, start: int, end: int, deadline: float) -> int:
    """Read into buf[start:end] until full, the peer closes (returns the fill), or `deadline`
    passes (TimeoutError). Leaves the socket's own timeout as it found it."""
    prev = sock.gettimeout()
    view = memoryview(buf)
    n = start
    try:
        while n < end:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("PDU read deadline passed")
            sock.settimeout(left)
            k = sock.recv_into(view[n:end], min(end - n, 1 << 20))
            if not k:
                break
            n += k
    finally:
        view.release()
        try:
            sock.settimeout(prev)
        except OSError:
            pass
    return n


def _drop_connection(dul: _dul.DULServiceProvider) -> None:
    sock = cast(AssociationSocket, dul.socket)
    if sock is not None and sock._is_connected:
        sock.close()  # shuts the socket; Evt17
    else:
        dul.event_queue.put("Evt17")


def _send_abort(dul: _dul.DULServiceProvider, reason: int) -> None:
    abort_pdu = A_ABORT_RQ()
    abort_pdu.source = 0x02  # service provider
    abort_pdu.reason_diagnostic = reason
    try:
        cast(AssociationSocket, dul.socket).send(abort_pdu.encode())
    except Exception:  # the connection is going anyway
        pass


def _read_pdu_data(self: _dul.DULServiceProvider) -> None:
    # pynetdicom 3.0.4 DULServiceProvider._read_pdu_data, with a read deadline, a length cap
    # checked before the body is read, and the body read into the PDU's own buffer.
    assoc_sock = cast(AssociationSocket, self.socket)
    sock = cast(socket.socket, assoc_sock.socket)
    deadline = time.monotonic() + _pdu_timeout(self)
    head = bytearray(6)
    try:
        got = _fill(sock, head, 0, 6, deadline)
    except TimeoutError:
        log.warning("a PDU header did not arrive within its deadline: connection dropped")
        _drop_connection(self)
        return
    except (OSError, ValueError, AttributeError):  # reset, TLS failure, socket closed under us
        self.event_queue.put("Evt17")
        return
    if got < 6:
        self.event_queue.put("Evt17")  # closed by the peer
        return
    pdu_type, _, pdu_length = struct.unpack(">BBL", head)
    if pdu_type not in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
        log.warning("unknown PDU type 0x%02X received", pdu_type)
        self.event_queue.put("Evt19")
        return
    cap = _pdu_cap(self.assoc, pdu_type)
    if pdu_length > cap:
        log.warning("PDU type 0x%02X claims %d bytes, more than the %d allowed: aborted", pdu_type, pdu_length, cap)
        _send_abort(self, 0x06)  # invalid PDU parameter value
        _drop_connection(self)
        return
    total = 6 + pdu_length
    buf = bytearray(min(total, 6 + PREALLOC_MAX))
    buf[:6] = head
    filled = 6
    try:
        while filled < total:
            if filled == len(buf):
                buf[len(buf):] = bytes(min(total - len(buf), len(buf)))  # grow as bytes arrive
            n = _fill(sock, buf, filled, len(buf), deadline)
            if n < len(buf):
                filled = n
                break
            filled = n
    except TimeoutError:
        log.warning("a PDU of %d bytes was not complete within its deadline: connection dropped", pdu_length)
        _drop_connection(self)
        return
    except (OSError, ValueError, AttributeError):
        self.event_queue.put("Evt17")
        return
    if filled != total:
        _dul.LOGGER.error(f"The received PDU is shorter than expected ({filled} of {total} bytes received)")
        self.event_queue.put("Evt17")
        return
    try:
        pdu, event = self._decode_pdu(buf)
        self.event_queue.put(event)
    except Exception as exc:
        _dul.LOGGER.error("Unable to decode the received PDU data")
        _dul.LOGGER.exception(exc)
        self.event_queue.put("Evt19")
        return
    self._recv_pdu.put(pdu)


# -- admission --------------------------------------------------------------------------------
_stock_negotiate_as_acceptor = _acse.ACSE._negotiate_as_acceptor


def _negotiate_as_acceptor(self: _acse.ACSE) -> None:
    _propose_only_requested(self)
    g = _guard.guard_of(self.assoc.ae)
    if g is not None:
        rq = self.requestor.primitive
        reject = g.check_request(self.assoc, rq)
        if reject:
            self.requestor.ae_title = rq.calling_ae_title
            _acse.LOGGER.info("Rejecting Association")
            self.send_reject(*reject)
            evt.trigger(self.assoc, evt.EVT_REJECTED, {})
            self.assoc.kill()
            return
    _stock_negotiate_as_acceptor(self)


def _process_request(self: AssociationServer, request: Any, client_address: Any) -> None:
    """Set up the association in the accepting thread, not in a thread started for it.

    pynetdicom's threaded server starts a thread per connection only to build the Association
    (no network I/O: the request is read by the association's own DUL thread, the TLS handshake
    too, see `_get_request`) and start its thread, then lets it end: one thread start and end
    of three per association, ~15 % of a bare association's CPU here (py-spy, issue 32). An
    exception is handled as before (`handle_error`, then the connection is shut), by
    `BaseServer._handle_request_noblock`."""
    self.finish_request(request, client_address)


def _service_actions(self: AssociationServer) -> None:
    """pynetdicom 3.0.4's accept loop runs a full `gc.collect()` every 60th turn (a turn is a
    new connection or its 0.5 s poll), "for dead Association threads". A finished association's
    objects are reference cycles that Python's own collector frees anyway; a forced full
    collection walks the whole heap (SQLAlchemy, pydicom) in the thread that accepts connections,
    under the GIL: 16 % of the node's GIL time in 2-instance studies (py-spy, issue 32)."""


def _propose_only_requested(acse: _acse.ACSE) -> None:
    """Narrow the association's supported contexts to the abstract syntaxes its request names.

    pynetdicom's `negotiate_as_acceptor` indexes every supported context (~170 storage classes)
    by abstract syntax on each association and then looks up only the requested ones; handed
    just those (the same objects the index would give), it decides the same: 0.25 ms of a bare
    association's ~2.5 ms CPU here (yappi, issue 32)."""
    contexts = acse.assoc.acceptor._contexts
    by_syntax = getattr(contexts, "by_syntax", None)
    rq = acse.requestor.primitive
    if by_syntax is None or rq is None:
        return
    wanted = {cx.abstract_syntax for cx in rq.presentation_context_definition_list}
    narrowed = AssociationContexts(by_syntax[a] for a in wanted if a in by_syntax)
    narrowed.by_syntax = by_syntax
    acse.assoc.acceptor._contexts = narrowed


def _get_request(self: AssociationServer) -> tuple[socket.socket, Any]:
    # pynetdicom 3.0.4 AssociationServer.get_request, without the TLS handshake: it happens at
    # the association's first read, in its own thread and under the PDU read deadline.
    client_socket, address = cast(socket.socket, self.socket).accept()
    if self.ssl_context:
        client_socket = self.ssl_context.wrap_socket(client_socket, server_side=True, do_handshake_on_connect=False)
    return client_socket, address

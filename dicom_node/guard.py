"""Admission and read limits that keep an idle, stalled or hostile peer from starving the node.

Seen before these limits (issue 14): 40 connections that each sent a 6-byte PDU header and
held refused every association for as long as they were held ("local limit exceeded"); a
header claiming 200 bytes followed by 4 bytes never timed out; a header claiming a 1 GiB PDU
grew the receiver by 1 GB. Now:

- every PDU must arrive whole within `pdu_timeout_s` of its first byte (ARTIM-style read
  deadline; `dicom_node.netfast` enforces it on every association socket);
- a PDU longer than we negotiated (P-DATA) or than any association PDU needs is aborted
  before a byte of its body is read or allocated;
- the association limits count *established* associations only, total and per peer address,
  so connections that never finish negotiating cannot use them up; connections still
  negotiating have their own caps, and a new one evicts the oldest over the cap (it is
  stalled: a real requestor sends its A-ASSOCIATE-RQ within milliseconds of connecting);
- an A-ASSOCIATE-RQ with no presentation context is rejected (permanent, no reason given).

Identity (issue 27): an A-ASSOCIATE-RQ that does not call our AE title is rejected ("called AE
title not recognised"); with a certificate map (`Identity.client_aes`), a TLS client may call only
as the AE titles mapped to its certificate's subject CN ("calling AE title not recognised"), so a
certificate issued to CR01 cannot store as PACS. Rejections log AE titles and the certificate's
CN (device names, never patient data).

Node-wide (issue 32): processes that share the node's listening socket (`dicom_node.receivers`)
share the association limits through `NodeSlots` (`dicom_node.assoc_slots`: flock-held slot
files, freed by the kernel when a receiver dies, kill -9 included), attached with `share()`; a
node with one receiving process counts its own associations. The caps on connections still
negotiating stay per process: they only choose which stalled connection a process drops.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import evt

from dicom_node.assoc_slots import NodeSlots

log = logging.getLogger(__name__)

# An A-ASSOCIATE-RQ/AC's length is not bound by the negotiated maximum: 128 contexts x 45
# transfer syntaxes is ~150 kB; nothing legitimate comes near 1 MiB.
MAX_ASSOCIATE_PDU = 1 << 20
# A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT bodies are 4 bytes long.
MAX_SMALL_PDU = 64
# What we accept when we negotiated "no maximum" (0): we read as the bytes arrive, so memory
# grows only with what a peer really sends, up to this.
UNLIMITED_PDU_CAP = 256 << 20

# Reject sources/reasons (PS3.8 9.3.4): (result, source, diagnostic)
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # transient, service provider (presentation), local limit exceeded
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent, service user, no reason given
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent, service user, called AE title not recognised


@dataclass(frozen=True)
class Limits:
    max_associations: int = 32  # established at once, node-wide (all receiving processes)
    max_per_peer: int = 16  # established at once from one peer address, node-wide
    max_pending: int = 64  # connected, association not yet negotiated
    max_pending_per_peer: int = 16
    pdu_timeout_s: float = 30.0  # a PDU must arrive whole within this of its first byte
    artim_timeout_s: float = 10.0  # a connection must send its A-ASSOCIATE-RQ within this


@dataclass(frozen=True)
class Identity:
    """Who may associate: the called AE title that must be ours, and optionally which calling AE
    titles each client certificate may use (subject CN -> titles; empty: no tie, the CA alone
    vouches for a client)."""

    called_ae: str
    client_aes: dict[str, frozenset[str]] = field(default_factory=dict)


class Guard:
    """Bound to a server's AE (`attach`); `dicom_node.netfast` consults it."""

    def __init__(self, limits: Limits, identity: Identity | None = None) -> None:
        self.limits = limits
        self.identity = identity
        self._lock = threading.Lock()
        self._pending: weakref.WeakKeyDictionary[Any, tuple[float, str]] = weakref.WeakKeyDictionary()
        self._slots: NodeSlots | None = None
        self._held: dict[int, weakref.ref[Any]] = {}  # node-wide slot -> the association holding it
        self.evicted = 0
        self.rejected = 0

    def share(self, slots: NodeSlots) -> None:
        """Count associations node-wide in `slots` (every receiving process of the node)."""
        self._slots = slots

    def attach(self, ae: Any) -> None:
        ae._pw_guard = self
        ae.acse_timeout = self.limits.artim_timeout_s  # pynetdicom's ARTIM for an acceptor
        ae.maximum_associations = 1 << 30  # ours (established only) replaces pynetdicom's count

    # -- connections not yet associated ----------------------------------------------------
    def on_open(self, assoc: Any) -> None:
        """A new connection (EVT_CONN_OPEN): over a pending cap, drop the oldest pending one."""
        peer = _peer(assoc)
        victims = []
        with self._lock:
            self._pending[assoc] = (time.monotonic(), peer)
            live = sorted(((t, p, a) for a, (t, p) in list(self._pending.items()) if _still_pending(a)),
                          key=lambda x: x[0])
            for a in [a for a, _ in list(self._pending.items()) if not _still_pending(a)]:
                self._pending.pop(a, None)
            victims = self._over_caps(live, peer)
            for v in victims:
                self._pending.pop(v, None)
        for v in victims:
            self.evicted += 1
            _drop(v)
        if victims:
            log.warning("dropped %d connection(s) that had not sent an association request", len(victims))

    # -- negotiation -----------------------------------------------------------------------
    def check_request(self, assoc: Any, rq: Any) -> tuple[int, int, int] | None:
        """A reject (result, source, diagnostic) for this A-ASSOCIATE-RQ, or None to go on."""
        with self._lock:
            self._pending.pop(assoc, None)
        if not rq.presentation_context_definition_list:
            self.rejected += 1
            return REJECT_NO_REASON
        if self.identity is not None:
            reject = self._check_identity(assoc, rq, self.identity)
            if reject:
                self.rejected += 1
                return reject
        if self._slots is not None:
            return self._take_slot(assoc, self._slots)
        peer = _peer(assoc)
        established = [a for a in assoc.ae.active_associations
                       if a is not assoc and a.is_acceptor and a.is_established]
        if len(established) >= self.limits.max_associations:
            self.rejected += 1
            log.warning("association refused: %d associations open", len(established))
            return REJECT_LOCAL_LIMIT
        if sum(1 for a in established if _peer(a) == peer) >= self.limits.max_per_peer:
            self.rejected += 1
            log.warning("association refused: %d associations open from one peer", self.limits.max_per_peer)
            return REJECT_LOCAL_LIMIT
        return None

    # -- node-wide slots -------------------------------------------------------------------
    def _take_slot(self, assoc: Any, slots: NodeSlots) -> tuple[int, int, int] | None:
        """A node-wide slot for `assoc`, given back when it ends; a reject when the node is full."""
        self._give_back_ended()
        got = slots.acquire(_peer(assoc), self.limits.max_associations, self.limits.max_per_peer)
        if isinstance(got, str):
            self.rejected += 1
            if got == "peer":
                log.warning("association refused: %d associations open from one peer across the node",
                            self.limits.max_per_peer)
            else:
                log.warning("association refused: %d associations open across the node", self.limits.max_associations)
            return REJECT_LOCAL_LIMIT
        with self._lock:
            self._held[got] = weakref.ref(assoc)

        def give_back(_event: Any = None) -> None:
            with self._lock:
                ref = self._held.get(got)
                if ref is None or ref() is not assoc:
                    return  # given back already (and perhaps taken again by another association)
                del self._held[got]
            slots.release(got)

        for event in (evt.EVT_RELEASED, evt.EVT_ABORTED, evt.EVT_REJECTED, evt.EVT_CONN_CLOSE):
            assoc.bind(event, give_back)
        return None

    def _give_back_ended(self) -> None:
        """Slots whose association is gone or whose thread ended without an event we saw."""
        with self._lock:
            ended = [slot for slot, ref in self._held.items()
                     if (a := ref()) is None or (a.ident is not None and not a.is_alive())]
            for slot in ended:
                del self._held[slot]
        if self._slots is not None:
            for slot in ended:
                self._slots.release(slot)

    # -- the node's own accept path (dicom_node.lean): no pynetdicom Association ------------
    def admit(self, *, peer: str, called: str, calling: str, n_contexts: int,
              established: Any = ()) -> tuple[tuple[int, int, int] | None, Any]:
        """The checks of `check_request` for an A-ASSOCIATE-RQ read by `dicom_node.lean`: (reject,
        None), or (None, give_back) where give_back() frees the association's slot (idempotent).
        `established`: the peer addresses of this process's other established associations (used
        where no node-wide `NodeSlots` are shared)."""
        if not n_contexts:
            self.rejected += 1
            return REJECT_NO_REASON, None
        if self.identity is not None:
            reject = self._identity_reject(called, calling, lambda: None, self.identity)
            if reject:
                self.rejected += 1
                return reject, None
        if self._slots is not None:
            slots = self._slots
            got = slots.acquire(peer, self.limits.max_associations, self.limits.max_per_peer)
            if isinstance(got, str):
                self.rejected += 1
                log.warning("association refused: %s across the node",
                            f"{self.limits.max_per_peer} associations open from one peer" if got == "peer"
                            else f"{self.limits.max_associations} associations open")
                return REJECT_LOCAL_LIMIT, None
            done = threading.Event()

            def give_back() -> None:
                if not done.is_set():
                    done.set()
                    slots.release(got)

            return None, give_back
        peers = list(established)
        if len(peers) >= self.limits.max_associations:
            self.rejected += 1
            log.warning("association refused: %d associations open", len(peers))
            return REJECT_LOCAL_LIMIT, None
        if sum(1 for p in peers if p == peer) >= self.limits.max_per_peer:
            self.rejected += 1
            log.warning("association refused: %d associations open from one peer", self.limits.max_per_peer)
            return REJECT_LOCAL_LIMIT, None
        return None, lambda: None

    def evict_oldest(self, pending: list[tuple[float, str, Any]], new_peer: str) -> list[Any]:
        """Which connections still negotiating to drop for a new one from `new_peer` (`pending`:
        (connected at, peer, handle), the new one included), by the pending caps, oldest first."""
        victims = self._over_caps(sorted(pending, key=lambda x: x[0]), new_peer)
        if victims:
            with self._lock:
                self.evicted += len(victims)
            log.warning("dropped %d connection(s) that had not sent an association request", len(victims))
        return victims

    def _over_caps(self, live: list[tuple[float, str, Any]], new_peer: str) -> list[Any]:
        """The pending caps, one policy for both accept paths: of `live` (oldest first), the handles
        to drop so that `new_peer` keeps at most `max_pending_per_peer` and all at most `max_pending`."""
        victims: list[Any] = []
        mine = [x for x in live if x[1] == new_peer]
        while len(mine) > self.limits.max_pending_per_peer:
            victims.append(mine.pop(0)[2])
        rest = [x for x in live if x[2] not in victims]
        while len(rest) > self.limits.max_pending:
            victims.append(rest.pop(0)[2])
        return victims

    def _check_identity(self, assoc: Any, rq: Any, ident: Identity) -> tuple[int, int, int] | None:
        return self._identity_reject(_title(rq.called_ae_title), _title(rq.calling_ae_title),
                                     lambda: certificate_cn(assoc), ident)

    def _identity_reject(self, called: str, calling: str, cn_of: Any, ident: Identity) -> tuple[int, int, int] | None:
        if called != ident.called_ae.strip():
            log.warning("association refused: called AE title %s is not ours (calling AE %s)",
                        _shown(called), _shown(calling))
            return REJECT_CALLED_AE
        if not ident.client_aes:
            return None
        cn = cn_of()
        if cn is None or cn not in ident.client_aes:
            log.warning("association refused: client certificate %s is not in the certificate map (calling AE %s)",
                        "without one subject CN" if cn is None else f"CN {_shown(cn)}", _shown(calling))
            return REJECT_CALLING_AE
        if calling not in ident.client_aes[cn]:
            log.warning("association refused: client certificate CN %s may not call as %s",
                        _shown(cn), _shown(calling))
            return REJECT_CALLING_AE
        return None


def certificate_cn(assoc: Any) -> str | None:
    """The subject CN of the peer's verified TLS certificate; None without TLS, without a verified
    certificate, or when the subject has no CN or several (ambiguous: refused rather than guessed).

    The CN, not a subjectAltName: every X.509 certificate has a subject, while a subjectAltName
    is optional in a client certificate (a device certificate made with `openssl req -subj /CN=...`
    has none), and the CN is the name an operator reads with `openssl x509 -noout -subject`."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        cert = sock.getpeercert()  # {} or None unless the chain was verified against our CA
    except (OSError, ValueError):
        return None
    if not cert:
        return None
    cns = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return str(cns[0]) if len(cns) == 1 else None


def _title(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip()


def _shown(value: str) -> str:
    """An AE title or CN as a log may show it: at most 64 characters, non-printables escaped."""
    return ascii(value[:64])


def _peer(assoc: Any) -> str:
    try:
        return str(assoc.requestor.address_info.address)
    except AttributeError:
        return ""


def _still_pending(assoc: Any) -> bool:
    started_or_starting = assoc.ident is None or assoc.is_alive()  # EVT_CONN_OPEN precedes start()
    return bool(started_or_starting) and not assoc.is_established and not assoc.is_rejected


def _drop(assoc: Any) -> None:
    """Shut the socket: a reader blocked in recv() wakes with end-of-file and the DUL ends."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def guard_of(ae: Any) -> Guard | None:
    return getattr(ae, "_pw_guard", None)

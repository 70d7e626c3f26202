"""Ports a process will listen on, checked together before it starts anything.

`serve` starts Triton, the worker, beat, the node and other rooms' listeners (HL7/MLLP, the
node's HTTP store); a port found taken only when its listener starts was found after the rest
had started (~54 s for the HL7 port, and its error did not name it). So every listener is
declared up front as a `ListenPort` (the core's by `workers.runtime`, other rooms' through the
`priorwatch.ports` entry point group, each a `(Settings) -> list[ListenPort]`), and `check`
names every conflict, one line each: which listener, which setting, which address.
"""

from __future__ import annotations

import errno
import socket
from collections import defaultdict
from importlib.metadata import entry_points
from typing import NamedTuple

from priorwatch.settings import Settings

__all__ = ["ENTRY_POINT_GROUP", "ListenPort", "PortConflict", "check", "declared_ports", "port_taken"]

ENTRY_POINT_GROUP = "priorwatch.ports"


class ListenPort(NamedTuple):
    """One listener: what it is, the setting that moves it (its environment variable), where."""

    what: str
    setting: str
    host: str
    port: int

    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class PortConflict(RuntimeError):
    """Ports are taken, or two listeners want one: the message names each, one line each."""


def port_taken(host: str, port: int) -> bool:
    """True when something listens on (host, port). SO_REUSEADDR as the servers use it, so a
    socket in TIME_WAIT after a restart does not count."""
    if port == 0:
        return False
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def declared_ports(settings: Settings) -> list[ListenPort]:
    """Other rooms' listeners (entry points `priorwatch.ports`); a room not installed has none."""
    out: list[ListenPort] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ports = ep.load()
        except ImportError:
            continue
        out += [ListenPort(*p) for p in ports(settings)]
    return out


def _shared(ports: list[ListenPort]) -> list[str]:
    """One line per port that two listeners of this plan both want (port 0 is any free port)."""
    by_port: dict[int, list[ListenPort]] = defaultdict(list)
    for p in ports:
        if p.port:
            by_port[p.port].append(p)
    lines = []
    for port, users in sorted(by_port.items()):
        if len(users) > 1:
            names = " and ".join(f"{u.what} ({u.setting})" for u in users)
            lines.append(f"port {port} is wanted twice: by {names}")
    return lines


def check(ports: list[ListenPort]) -> None:
    """Raise PortConflict naming every listener whose port is taken or wanted twice."""
    lines = _shared(ports)
    for p in ports:
        if port_taken(p.host, p.port):
            lines.append(f"{p.what}: {p.where()} is already in use (setting {p.setting})")
    if lines:
        raise PortConflict(
            "cannot start, nothing was started:\n" + "\n".join(f"  {line}" for line in lines)
            + "\nIs another PriorWatch (or a leftover tritonserver/worker) running? Stop it, or set the named "
              "setting(s) to a free port."
        )

"""`python -m dicom_node`: run the Storage SCP and its completion monitor from settings
(`PRIORWATCH_*` environment or `PRIORWATCH_CONFIG` TOML) until SIGTERM or SIGINT.

`--receiver-fd N` runs one extra receiving process on the node's inherited listening socket
(started by the node itself, see `dicom_node.receivers`); it ends when its stdin closes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from priorwatch.log import configure_logging
from priorwatch.settings import get_settings

from dicom_node.scp import StorageNode

log = logging.getLogger("dicom_node")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    configure_logging()
    settings = get_settings()
    stop = threading.Event()
    if args[:1] == ["--receiver-fd"]:
        listener = socket.socket(fileno=int(args[1]))
        listener.setblocking(False)
        slot = (int(args[3]), int(args[5])) if len(args) >= 6 else None
        node = StorageNode(settings, monitor=False, listener=listener, slot=slot).start()

        def _watch_parent() -> None:
            while os.read(0, 4096):  # returns b"" at EOF: the node closed our pipe or died
                pass
            stop.set()

        threading.Thread(target=_watch_parent, name="parent-watch", daemon=True).start()
    else:
        node = StorageNode(settings).start()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"READY {node.port}", flush=True)
    while not stop.wait(1.0):
        pass
    (log.debug if args else log.info)("stopping")  # a receiver ends with its node: no news
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m dicom_node`: run the Storage SCP and its completion monitor from settings
(`PRIORWATCH_*` environment or `PRIORWATCH_CONFIG` TOML) until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from priorwatch.log import configure_logging
from priorwatch.settings import get_settings

from dicom_node.scp import StorageNode

log = logging.getLogger("dicom_node")


def main() -> int:
    configure_logging()
    settings = get_settings()
    node = StorageNode(settings).start()
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"READY {node.port}", flush=True)
    while not stop.wait(1.0):
        pass
    log.info("stopping")
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

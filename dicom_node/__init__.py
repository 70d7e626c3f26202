"""The DICOM edge: Storage SCP, spool, study completion; query/retrieve SCU, SR writer.

Public API::

    StorageNode(settings).start() / .stop() / .port      the Storage SCP (+ completion monitor)
    CompletionMonitor(settings)                           closes studies, creates and sends jobs
    Ingest(settings).store(raw, ...) / .sink(role)        file one Part-10 byte string
    send_files(paths, host, port, called_ae, calling_ae)  Storage SCU, one association
    echo(host, port, called_ae, calling_ae)               C-ECHO
    statuses                                              the C-STORE statuses we answer
    netfast.apply()                                       pynetdicom network-loop fixes (applied on import)
    lean                                                  the node's own accept path (Settings.node_accept)
    Guard, Limits                                         starvation limits (PDU deadline/cap, association limits)
    tls.server_context(settings) / tls.client_context()   DICOM TLS contexts from settings
"""

from dicom_node import netfast, statuses, tls
from dicom_node.guard import Guard, Limits
from dicom_node.completion import CompletionMonitor
from dicom_node.ingest import Ingest, StoreResult
from dicom_node.scp import StorageNode
from dicom_node.scu import NOT_SENT, echo, send_files, send_files_detailed

netfast.apply()

__all__ = [
    "NOT_SENT",
    "CompletionMonitor",
    "Guard",
    "Ingest",
    "Limits",
    "StorageNode",
    "StoreResult",
    "echo",
    "netfast",
    "send_files",
    "send_files_detailed",
    "statuses",
    "tls",
]

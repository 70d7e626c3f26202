"""The fast receive path reads and writes exactly what the slow, library-only path would."""

from __future__ import annotations

import copy
import io
import time

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
from pynetdicom.presentation import build_context

from dicom_node import netfast, part10
from dicom_node.headers import IngestError, read_header, read_header_dataset

# Real files in every encoding pydicom-data ships: explicit/implicit little endian, big
# endian, deflated, JPEG family; CT, MR, CR, RT, SEG, SR.
def _part10_files() -> list[str]:
    """Files with a complete file meta group, from which a sender's data set can be cut."""
    out = []
    for f in get_testdata_files("*.dcm"):
        try:
            meta = dcmread(f, stop_before_pixels=True).file_meta
        except Exception:
            continue
        if "TransferSyntaxUID" in meta and "FileMetaInformationGroupLength" in meta:
            out.append(f)
    return out


FILES = _part10_files()


def _dataset_part(path: str) -> tuple[bytes, str]:
    raw = open(path, "rb").read()
    ds = dcmread(io.BytesIO(raw), stop_before_pixels=True)
    start = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    return raw[start:], str(ds.file_meta.TransferSyntaxUID)


def _pydicom_text(ds, keyword: str) -> str:  # type: ignore[no-untyped-def]
    value = ds.get(keyword)
    if value is None:
        return ""
    return ("\\".join(str(v) for v in value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
            else str(value)).strip(" \x00")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_header_from_received_data_set_matches_pydicom(path: str) -> None:
    assert len(FILES) > 100  # the samples are there: this cannot pass on nothing
    raw = open(path, "rb").read()
    ds = dcmread(io.BytesIO(raw), stop_before_pixels=True)
    try:
        full = read_header(raw)
    except IngestError as exc:  # refused (e.g. no PatientID): the data-set path refuses alike
        body, ts = _dataset_part(path)
        with pytest.raises(IngestError) as again:
            read_header_dataset(io.BytesIO(body), ts)
        assert again.value.status == exc.status
        return
    body, ts = _dataset_part(path)
    received = read_header_dataset(io.BytesIO(body), ts)
    assert received == full
    # ...and both agree with pydicom's own converted values.
    assert full.study_uid == _pydicom_text(ds, "StudyInstanceUID")
    assert full.sop_instance_uid == _pydicom_text(ds, "SOPInstanceUID")
    assert full.study["patient_name"] == _pydicom_text(ds, "PatientName")[:128]
    assert full.study["accession"] == _pydicom_text(ds, "AccessionNumber")
    assert full.instance["manufacturer"] == _pydicom_text(ds, "Manufacturer")[:64]
    assert full.instance["rows"] == (int(ds.Rows) if "Rows" in ds else None)
    assert full.instance["columns"] == (int(ds.Columns) if "Columns" in ds else None)


def test_received_headers_are_walked_not_parsed_by_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receive path reads little-endian data sets with its own element walk (pydicom's
    reader cost 25 % of the node's CPU per instance): every such sample but the few it hands
    back to pydicom (a sequence in UN, a truncated file, implicit VR under an explicit transfer
    syntax) is walked, undefined-length sequences included; the test above checks that the
    headers it reads are pydicom's."""
    from pydicom.uid import UID

    from dicom_node import headers

    walked, eligible, nested = 0, 0, 0
    for path in FILES:
        body, ts = _dataset_part(path)
        uid = UID(ts)
        if not (uid.is_little_endian and not uid.is_deflated):
            continue
        eligible += 1
        found = headers._walk(memoryview(body), bool(uid.is_implicit_VR))
        walked += found is not None
        nested += found is not None and b"\xff\xff\xff\xff" in body[:found[1]]
    assert eligible > 100
    assert (walked >= eligible - 6, nested >= 10) == (True, True)

    def no_pydicom(*_a: object, **_k: object) -> None:
        raise AssertionError("pydicom's reader used on the receive path")

    body, ts = _dataset_part(get_testdata_file("CT_small.dcm"))
    expected = read_header_dataset(io.BytesIO(body), ts)
    monkeypatch.setattr(headers, "read_dataset", no_pydicom)
    assert read_header_dataset(io.BytesIO(body), ts) == expected


@pytest.mark.parametrize("charset,name", [("ISO_IR 144", "Люкceмбypг^Иван"), ("ISO_IR 126", "Διονυσιος"),
                                          ("ISO_IR 192", "Wang^XiaoDong=王^小東"), ("ISO_IR 100", "Müller^Jürgen")])
def test_names_are_decoded_with_their_character_set(tmp_path, charset: str, name: str) -> None:  # type: ignore[no-untyped-def]
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.InstitutionName = name.split("^")[0]
    path = tmp_path / "named.dcm"
    ds.save_as(path, enforce_file_format=True)
    body, ts = _dataset_part(str(path))
    header = read_header_dataset(io.BytesIO(body), ts)
    assert header.study["patient_name"] == name
    assert header.study["institution"] == name.split("^")[0]
    assert read_header(path.read_bytes()) == header


@pytest.mark.parametrize("version_name,source_ae", [("OFFIS_DCMTK_367", "STORESCU"), ("PYNETDICOM_304", "A")])
def test_file_meta_is_what_pydicom_writes(version_name: str, source_ae: str) -> None:
    meta = dict(sop_class_uid="1.2.840.10008.5.1.4.1.1.1", sop_instance_uid="1.2.826.0.1.3680043.8.498.123",
                transfer_syntax="1.2.840.10008.1.2", implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
                implementation_version_name=version_name, source_ae=source_ae)
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = meta["sop_class_uid"]
    fm.MediaStorageSOPInstanceUID = meta["sop_instance_uid"]
    fm.TransferSyntaxUID = meta["transfer_syntax"]
    fm.ImplementationClassUID = meta["implementation_class_uid"]
    fm.ImplementationVersionName = version_name
    fm.SourceApplicationEntityTitle = source_ae
    expected = DicomBytesIO()
    expected.is_little_endian, expected.is_implicit_VR = True, False
    write_file_meta_info(expected, fm, enforce_standard=True)
    assert part10.file_meta(**meta) == expected.getvalue()


def test_associations_share_read_only_contexts() -> None:
    """Every association reads the server's one copy of its supported contexts (pynetdicom
    deep-copied ~170 of them per association; its negotiation only reads them): shared, and a
    write raises instead of reaching the other associations."""
    assert netfast.applied()
    contexts = netfast.SharedUIDContexts(
        build_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES) for cx in AllStoragePresentationContexts[:3])
    mine = copy.deepcopy(contexts)
    assert [a is b for a, b in zip(mine, contexts)] == [True] * 3
    with pytest.raises(AttributeError):
        mine[0].context_id = 7
    with pytest.raises(AttributeError):
        mine[0].transfer_syntax = [ALL_TRANSFER_SYNTAXES[0]]
    assert (contexts[0].context_id, len(contexts[0].transfer_syntax)) == (None, len(ALL_TRANSFER_SYNTAXES))


def test_paused_requestor_keeps_the_reply_its_reactor_took(node, settings) -> None:  # type: ignore[no-untyped-def]
    """A requestor's own thread pauses the association reactor and then reads the reply to its
    request itself. If the reactor, blocked in its bounded wait, takes that reply after the
    pause began, it must hand it back (pynetdicom would otherwise drop it as an "unexpected"
    message and the sender would time out)."""
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title="MODALITY")
    ae.dimse_timeout = 1  # a dropped reply fails fast
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=settings.ae_title)
    kept = 0
    try:
        for i in range(30):
            reply = C_STORE()
            reply.MessageIDBeingRespondedTo = i + 1
            reply.Status = 0
            time.sleep(0.003)  # the idle reactor is inside its bounded wait nearly all the time
            assoc._reactor_checkpoint.clear()  # what send_c_store() does first
            assoc.dimse.msg_queue.put((1, reply))  # the reply arrives (the DUL thread queues it)...
            time.sleep(0.002)  # ...before the requesting thread gets to read it
            context_id, got = assoc.dimse.get_msg(block=True)
            kept += got is reply
            assoc._reactor_checkpoint.set()
    finally:
        assoc.release()
    assert kept == 30


def test_association_is_set_up_in_the_accepting_thread(settings, maker) -> None:  # type: ignore[no-untyped-def]
    """pynetdicom started a thread per connection only to build its Association; the node builds
    it in the thread that accepted the connection (one thread start and end fewer per
    association). EVT_CONN_OPEN fires where the association is built."""
    settings.node_accept = "pynetdicom"  # pynetdicom's accept path (dicom_node.netfast), whatever the default
    import threading

    from dicom_node import StorageNode, send_files

    seen: list[str] = []
    node = StorageNode(settings, monitor=False)
    accept_handler = node._on_conn_open

    def on_open(event):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        accept_handler(event)

    node._on_conn_open = on_open  # type: ignore[method-assign]
    with node:
        files = maker.study(2)
        assert send_files(files[:1], "127.0.0.1", node.port, settings.ae_title) == [0]
        assert send_files(files[1:], "127.0.0.1", node.port, settings.ae_title) == [0]
    assert len(seen) == 2
    assert [name.startswith(("AcceptorServer@", "priorwatch-acceptor")) for name in seen] == [True, True]


def test_negotiation_sees_only_the_requested_classes(settings) -> None:  # type: ignore[no-untyped-def]
    """Negotiation is handed only the supported contexts of the abstract syntaxes requested
    (pynetdicom indexed all ~170 per association); it decides as before: a supported class is
    accepted with a transfer syntax it proposed, an unknown one refused (0x03)."""
    settings.node_accept = "pynetdicom"  # pynetdicom's accept path (dicom_node.netfast), whatever the default
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from dicom_node import StorageNode

    seen: list[object] = []
    node = StorageNode(settings, monitor=False)
    opened = node._on_conn_open

    def on_open(event):  # type: ignore[no-untyped-def]
        seen.append(event.assoc)
        opened(event)

    node._on_conn_open = on_open  # type: ignore[method-assign]
    with node:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
        ae.add_requested_context("1.2.826.0.1.3680043.9.7156.99.1", ["1.2.840.10008.1.2"])  # no such class
        assoc = ae.associate("127.0.0.1", node.port, ae_title=settings.ae_title)
        assert assoc.is_established
        results = sorted((str(cx.abstract_syntax), cx.result, list(cx.transfer_syntax)) for cx in assoc.accepted_contexts
                         + assoc.rejected_contexts)
        assoc.release()
    assert results == [("1.2.826.0.1.3680043.9.7156.99.1", 0x03, ["1.2.840.10008.1.2"]),
                       (str(CTImageStorage), 0x00, ["1.2.840.10008.1.2.1"])]
    (server_side,) = seen
    assert [str(cx.abstract_syntax) for cx in server_side.acceptor._contexts] == [str(CTImageStorage)]  # type: ignore[attr-defined]

"""The pynetdicom internals the listener relies on, and what they buy: no partial files."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicom_gateway.pynetdicom_compat import RELIES_ON
from tests.peers import free_port
from tests.test_end_to_end import assert_stored


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", sorted(RELIES_ON))
def test_the_pynetdicom_code_we_rely_on_is_unchanged(dotted: str) -> None:
    """Fails when an upgrade of pynetdicom changes what dicom_gateway/pynetdicom_compat.py
    reads: review that module against the new code, then update RELIES_ON."""
    source = inspect.getsource(_resolve(dotted))  # type: ignore[arg-type]
    for needle in RELIES_ON[dotted]:
        assert needle in source, f"{dotted} no longer contains {needle!r}"


class CuttingProxy:
    """Forwards a sender to the gateway and cuts the connection after ``limit`` bytes:
    a peer that drops mid-transfer, as a failing network or a killed sender does."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.port, self.target, self.limit = free_port(), target_port, limit
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.cut = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.server.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target))

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        sent = 0
        try:
            while sent < self.limit and (data := client.recv(65536)):
                data = data[: self.limit - sent]
                upstream.sendall(data)
                sent += len(data)
        finally:
            for s in (upstream, client):  # shutdown wakes the other thread's recv now
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.cut.set()


@pytest.mark.integration
def test_a_dropped_association_leaves_no_partial_file(serve_factory, rg1: Path) -> None:
    srv = serve_factory.new().start()
    proxy = CuttingProxy(srv.port, limit=3_000_000)  # RG1 is 7.2 MB: cut mid-pixels
    out = srv.storescu(rg1, extra=("-v",), port=proxy.port)
    assert proxy.cut.wait(30)
    assert "Store Response (Success)" not in out.stderr
    tmp = srv.data_dir / "spool" / ".tmp"
    deadline = time.monotonic() + 5
    while (list(tmp.iterdir()) or "partial dataset removed" not in srv.log.read_text()) \
            and time.monotonic() < deadline:  # the file goes first, then the log line
        time.sleep(0.1)
    assert list(tmp.iterdir()) == []  # removed when the association ended, not at restart
    assert "partial dataset removed" in srv.log.read_text()
    assert not list((srv.data_dir / "spool").rglob("*.dcm"))
    assert_stored(srv.storescu(rg1, extra=("-v",)))  # and it keeps serving


def test_reactors_wait_on_work_instead_of_sleeping() -> None:
    """Both reactors of a real association go through the waits ``install_wakeups`` gives
    them (a pynetdicom that stopped calling ``time.sleep`` there would leave them unused),
    and the association still works: echoes and stores answered, sockets closed after."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        ComputedRadiographyImageStorage,
        Verification,
    )

    from dicom_gateway.pynetdicom_compat import install_wakeups, remove_wakeups
    from tests.dicom_factory import make_cr

    waits = {"assoc": 0, "dul": 0}
    installed: list[bool] = []
    pairs: list[tuple[socket.socket, socket.socket]] = []

    def counting(name: str, wait: object) -> object:
        def counted(seconds: float) -> None:
            waits[name] += 1
            wait(seconds)  # type: ignore[operator]
        return counted

    def on_open(event: evt.Event) -> None:
        installed.append(install_wakeups(event.assoc))
        event.assoc._cxr_wait = counting("assoc", event.assoc._cxr_wait)
        event.assoc.dul._cxr_wait = counting("dul", event.assoc.dul._cxr_wait)
        pairs.append(event.assoc._cxr_wake_sockets)

    scp = AE(ae_title="SCP")
    scp.add_supported_context(Verification)
    scp.add_supported_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_CONN_OPEN, on_open), (evt.EVT_CONN_CLOSE, lambda e: remove_wakeups(e.assoc)),
        (evt.EVT_C_STORE, lambda e: 0x0000)])
    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context(Verification)
        scu.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", port, ae_title="SCP")
        assert assoc.is_established
        for _ in range(20):
            assert assoc.send_c_echo().Status == 0x0000
        ds = make_cr("1.2.3.4", view="PA", seed=1)
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        deadline = time.monotonic() + 5
        while pairs and pairs[0][0].fileno() != -1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
    assert installed == [True]
    assert waits["assoc"] > 0 and waits["dul"] > 0
    assert all(s.fileno() == -1 for s in pairs[0])  # closed with the association


def test_the_reactor_clock_sleeps_normally_outside_reactor_threads() -> None:
    from dicom_gateway.pynetdicom_compat import _CLOCK

    start = time.monotonic()
    _CLOCK.sleep(0.05)
    assert time.monotonic() - start >= 0.05
    assert _CLOCK.monotonic() >= start  # everything else is the time module's own


@settings(max_examples=int(os.environ.get("CXR_FUZZ_EXAMPLES", "300")), deadline=None)
@given(message_id=st.integers(0, 0xFFFF), status=st.integers(0, 0xFFFF),
       sop_class=st.sampled_from(["1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.7",
                                  "1.2.840.10008.5.1.4.1.1.1.1"]),
       sop_instance=st.lists(st.integers(0, 10**12), min_size=2, max_size=12).map(
           lambda parts: ".".join(map(str, parts))[:64]).filter(lambda u: not u.endswith(".")))
def test_our_c_store_rsp_is_byte_for_byte_pynetdicoms(message_id: int, status: int,
                                                      sop_class: str, sop_instance: str) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    from dicom_gateway.pynetdicom_compat import encode_c_store_rsp

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = list(message.encode_msg(1, 16382))
    ((context_id, pdv),) = pdata.presentation_data_value_list
    assert pdv == b"\x03" + encode_c_store_rsp(message_id, sop_class, sop_instance, status)


def test_live_store_responses_skip_pydicom_unless_someone_listens(monkeypatch) -> None:
    """On a real association, plain C-STORE responses go out from our bytes (pynetdicom's
    encoder is never called) and the peer reads each status; with an EVT_DIMSE_SENT
    handler bound, pynetdicom encodes them itself, so that handler sees every message."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, _config, evt
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.sop_class import ComputedRadiographyImageStorage  # type: ignore

    from dicom_gateway.pynetdicom_compat import install_fast_store_response
    from tests.dicom_factory import make_cr

    encoded: list[int] = []
    original = C_STORE_RSP.encode_msg

    def counting(self: object, *args: object) -> object:
        encoded.append(1)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(C_STORE_RSP, "encode_msg", counting)
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "none")  # as the listener sets it
    statuses = iter([0x0000, 0xA900, 0xC000, 0xA700] * 2)
    sent: list[object] = []
    for listen in (False, True):
        handlers = [(evt.EVT_CONN_OPEN, lambda e: install_fast_store_response(e.assoc)),
                    (evt.EVT_C_STORE, lambda e: next(statuses))]
        if listen:
            handlers.append((evt.EVT_DIMSE_SENT, lambda e: sent.append(e.message)))
        scp = AE(ae_title="SCP")
        scp.add_supported_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        port = free_port()
        server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
        try:
            scu = AE(ae_title="SCU")
            scu.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
            assoc = scu.associate("127.0.0.1", port, ae_title="SCP")
            assert assoc.is_established
            got = [assoc.send_c_store(make_cr("1.2.3.4", view="PA", seed=i)).Status
                   for i in range(4)]
            assoc.release()
        finally:
            server.shutdown()
        assert got == [0x0000, 0xA900, 0xC000, 0xA700]
        assert len(encoded) == (4 if listen else 0) and len(sent) == (4 if listen else 0)


_UIDS = st.lists(st.integers(0, 10**12), min_size=2, max_size=12).map(
    lambda parts: ".".join(map(str, parts))[:64]).filter(lambda u: not u.endswith("."))


@settings(max_examples=int(os.environ.get("CXR_FUZZ_EXAMPLES", "300")), deadline=None)
@given(sop_class=_UIDS, sop_instance=_UIDS,
       transfer_syntax=st.sampled_from(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                        "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50",
                                        "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"]),
       implementation=st.one_of(st.none(), st.tuples(
           _UIDS, st.from_regex(r"[ -\[\]-~]{1,16}", fullmatch=True))))
def test_our_file_meta_is_byte_for_byte_pynetdicoms_and_pydicoms(
        sop_class: str, sop_instance: str, transfer_syntax: str,
        implementation: tuple[str, str] | None) -> None:
    """What pynetdicom would write before a received dataset (its ``create_file_meta``,
    pydicom's ``write_file_meta_info``), against ``install_fast_file_meta``'s path."""
    import io

    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID
    from pynetdicom.dsutils import create_file_meta

    from dicom_gateway.pynetdicom_compat import (
        _create_file_meta,
        _write_file_meta_info,
        install_fast_file_meta,
    )

    install_fast_file_meta()
    kwargs: dict[str, object] = {"sop_class_uid": UID(sop_class),
                                 "sop_instance_uid": UID(sop_instance),
                                 "transfer_syntax": UID(transfer_syntax)}
    if implementation is not None:
        kwargs["implementation_uid"], kwargs["implementation_version"] = implementation
    theirs, ours = io.BytesIO(), io.BytesIO()
    write_file_meta_info(theirs, create_file_meta(**kwargs))  # type: ignore[arg-type]
    _write_file_meta_info(ours, _create_file_meta(**kwargs))
    assert ours.getvalue() == theirs.getvalue()


def test_file_meta_values_out_of_the_plain_forms_are_left_to_pydicom() -> None:
    from pydicom.dataset import FileMetaDataset

    from dicom_gateway.pynetdicom_compat import (
        _create_file_meta,
        encode_file_meta,
        install_fast_file_meta,
    )

    install_fast_file_meta()
    plain = ("1.2.840.10008.5.1.4.1.1.1", "1.2.3.4", "1.2.840.10008.1.2.1", "1.2.3", "X")
    assert encode_file_meta(*plain) is not None
    for i, odd in [(1, "1.2.3 "), (1, ""), (1, "1" * 65), (2, "1.2.é"), (4, "A\\B"),
                   (4, "TOO_LONG_VERSION_NAME")]:
        values = list(plain)
        values[i] = odd
        assert encode_file_meta(*values) is None
    meta = _create_file_meta(sop_class_uid=plain[0], sop_instance_uid="1.2.3 ",
                             transfer_syntax=plain[2])
    assert isinstance(meta, FileMetaDataset)  # pynetdicom's own, written by pydicom


def test_a_live_store_writes_its_file_meta_without_pydicom(monkeypatch, tmp_path) -> None:
    """A real C-STORE in chunked mode: the stored file starts with the file meta our
    encoder wrote (pynetdicom's create_file_meta and pydicom's writer never called), and
    pydicom reads it back with the command's UIDs and the accepted transfer syntax."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, _config, dimse_messages, dsutils, evt
    from pynetdicom.sop_class import ComputedRadiographyImageStorage  # type: ignore

    from dicom_gateway import pynetdicom_compat
    from tests.dicom_factory import make_cr

    calls: list[str] = []

    def refuse(name: str) -> object:
        def called(*args: object, **kwargs: object) -> object:
            calls.append(name)
            raise AssertionError(f"{name} called")
        return called

    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", True)
    create = refuse("create_file_meta")
    create.__kwdefaults__ = dsutils.create_file_meta.__kwdefaults__  # type: ignore
    monkeypatch.setattr(dimse_messages, "create_file_meta", create)
    monkeypatch.setattr(dimse_messages, "write_file_meta_info", refuse("write_file_meta_info"))
    monkeypatch.setattr(pynetdicom_compat, "_ORIGINAL_META", {})
    pynetdicom_compat.install_fast_file_meta()
    read: list[pydicom.Dataset] = []

    def on_store(event: evt.Event) -> int:
        read.append(pydicom.dcmread(event.dataset_path))
        return 0x0000

    scp = AE(ae_title="SCP")
    scp.add_supported_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", port, ae_title="SCP")
        assert assoc.is_established
        sent = make_cr("1.2.3.4", view="PA", seed=3)
        assert assoc.send_c_store(sent).Status == 0x0000
        assoc.release()
    finally:
        server.shutdown()
    assert calls == [] and len(read) == 1
    meta = read[0].file_meta
    assert meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == sent.SOPClassUID
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert read[0].SOPInstanceUID == sent.SOPInstanceUID

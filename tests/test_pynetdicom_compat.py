"""The pynetdicom internals the listener relies on: the canary that fingerprints them,
the fallback when they change, and what the adaptations buy (no partial files, no idle
sleeps, responses and file meta without pydicom)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynetdicom import association as pn_association
from pynetdicom import dul as pn_dul

from dicom_gateway.listen.pynetdicom import canary as pynetdicom_canary
from tests.peers import dicom_tool, free_port
from tests.test_end_to_end import assert_stored


@pytest.fixture(autouse=True)
def pynetdicom_as_found(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever a test installs into pynetdicom (the reactor clock, the file meta writer,
    the listener's settings) is undone after it; the canary's verdict is taken afresh."""
    from pynetdicom import _config, dimse_messages

    from dicom_gateway.listen.pynetdicom import encoding as pynetdicom_encoding

    for module, name in [(pn_association, "time"), (pn_dul, "time"),
                         (dimse_messages, "create_file_meta"),
                         (dimse_messages, "write_file_meta_info"), (dimse_messages, "_config"),
                         (_config, "STORE_RECV_CHUNKED_DATASET"),
                         (_config, "LOG_HANDLER_LEVEL"), (tempfile, "tempdir")]:
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(pynetdicom_encoding, "_ORIGINAL_META",
                        dict(pynetdicom_encoding._ORIGINAL_META))
    for cached in (pynetdicom_canary.verdict, pynetdicom_canary.checked_at_start):
        cached.cache_clear()
    try:
        yield
    finally:
        for cached in (pynetdicom_canary.verdict, pynetdicom_canary.checked_at_start):
            cached.cache_clear()


# -- the canary -------------------------------------------------------------------------

def test_the_canary_passes_on_the_installed_pynetdicom() -> None:
    """The hashes are those of what is installed (the pinned releases), every adaptation's
    entry has one and no hash is left over."""
    assert {n: version(n) for n in pynetdicom_canary.RECORDED_FOR} == \
        pynetdicom_canary.RECORDED_FOR
    assert pynetdicom_canary.check() == {}
    relied_on = set().union(*pynetdicom_canary.ADAPTATIONS.values())
    assert set(pynetdicom_canary.SOURCE_SHA256) == relied_on
    assert set(pynetdicom_canary.ADAPTATIONS) == {
        "wakeups", "partial_cleanup", "slot_limit", "fast_store_response", "fast_file_meta",
        "handed_connections", "association_config", "pdu_limit", "tls_handshake"}
    assert pynetdicom_canary.verdict().off == frozenset()


@pytest.fixture
def copy_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
            ) -> Callable[[str, Callable[[list[str]], None]], ModuleType]:
    """Loads a copy of a module's file with an edit applied to its lines (registered in
    sys.modules for the test, as inspect needs to find a class's source)."""
    def load(name: str, edit: Callable[[list[str]], None]) -> ModuleType:
        lines = Path(inspect.getfile(importlib.import_module(name))).read_text() \
            .splitlines(keepends=True)
        edit(lines)
        path = tmp_path / f"copy_of_{name.replace('.', '_')}.py"
        path.write_text("".join(lines))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        copy = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, path.stem, copy)
        spec.loader.exec_module(copy)
        return copy
    return load


def _key_module(key: str) -> str:
    if ":" in key:
        return key.split(":", 1)[0]
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        with contextlib.suppress(ImportError):
            if importlib.util.find_spec(".".join(parts[:cut])) is not None:
                return ".".join(parts[:cut])
    raise ImportError(key)


def _replace_once(key: str, old: str, new: str) -> Callable[[list[str]], None]:
    """An edit of the one line of ``key``'s code that holds ``old``."""
    block, first = inspect.getsourcelines(pynetdicom_canary.resolve(key))  # type: ignore

    def edit(lines: list[str]) -> None:
        (at,) = [i for i in range(first - 1, first - 1 + len(block)) if old in lines[i]]
        lines[at] = lines[at].replace(old, new)
    return edit


@pytest.mark.parametrize("key, old, new, also", [
    # a longer idle sleep in the DUL's loop: a changed value, not a removal
    ("pynetdicom.dul.DULServiceProvider.run_reactor", "time.sleep(self._run_loop_delay)",
     "time.sleep(self._run_loop_delay * 10)", {"pynetdicom.dul:time"}),
    # the association limit compared differently (a substring test's needle survives)
    ("pynetdicom.acse.ACSE._negotiate_as_acceptor",
     "if len(active_acceptors) > self.assoc.ae.maximum_associations:",
     "if len(active_acceptors) >= self.assoc.ae.maximum_associations:", set()),
    # a failed request no longer reported through handle_error
    ("pynetdicom.transport.ThreadedAssociationServer.process_request_thread",
     "self.handle_error(request, client_address)", "pass", set()),
    # the private attribute SlotLimitedAE reads, renamed by its setter
    ("pynetdicom.ae.ApplicationEntity.maximum_associations.fset",
     "self._maximum_associations = value", "self._max_associations = value", set()),
    # the queue the wake-ups replace, written another way
    ("pynetdicom.dul.DULServiceProvider.send_pdu", "self.to_provider_queue.put(primitive)",
     "self.to_provider_queue.put_nowait(primitive)", set()),
])
def test_one_changed_line_in_a_copy_fails_the_canary_for_that_entry(
        key: str, old: str, new: str, also: set[str], copy_of: Any) -> None:
    module = _key_module(key)
    copy = copy_of(module, _replace_once(key, old, new))
    assert pynetdicom_canary.check(modules={module: copy}) == dict.fromkeys({key} | also,
                                                                           "changed")


def _add_a_line(key: str) -> Callable[[list[str]], None]:
    """An edit that adds one statement at the end of ``key``'s code (or, for a
    ``module:time`` entry, a new function that sleeps)."""
    if ":" in key:
        return lambda lines: lines.append("\n\ndef _new_sleeper():\n    time.sleep(1)\n")
    block, first = inspect.getsourcelines(pynetdicom_canary.resolve(key))  # type: ignore
    header = next(line for line in block if line.lstrip().startswith(("def ", "class ")))
    indent = header[: len(header) - len(header.lstrip())] + "    "

    def edit(lines: list[str]) -> None:
        lines.insert(first - 1 + len(block), f"{indent}_added = None\n")
    return edit


@pytest.mark.parametrize("key", sorted(pynetdicom_canary.SOURCE_SHA256))
def test_a_line_added_to_any_relied_on_function_fails_the_canary(
        key: str, copy_of: Any) -> None:
    """Every entry is sensitive: a statement added to it in a copy of its module is
    reported (the copy's other functions, moved down a line, are not)."""
    module = _key_module(key)
    if ":" not in key:  # the entry names code of that module, not an inherited method
        assert inspect.getmodule(pynetdicom_canary.resolve(key)).__name__ == module  # type: ignore
    copy = copy_of(module, _add_a_line(key))
    found = pynetdicom_canary.check(modules={module: copy})
    assert found.get(key) == "changed"
    # the module's ``time`` entry also covers a changed function that reads ``time``
    assert set(found) <= {key, f"{module}:time"}, found


def test_a_changed_entry_turns_off_every_adaptation_relying_on_it_and_only_those() -> None:
    found = pynetdicom_canary.judge({"pynetdicom.dul.DULServiceProvider.send_pdu": "changed"})
    assert found.off == {"wakeups", "fast_store_response"}
    assert found.usable("fast_file_meta", "partial_cleanup", "slot_limit",
                        "handed_connections")
    assert not found.usable("fast_file_meta", "wakeups")
    with pytest.raises(KeyError):
        found.usable("no such adaptation")


@pytest.mark.integration
@pytest.mark.parametrize("changed", [(), ("pynetdicom.dul:time",
                                          "pynetdicom.dimse.DIMSEServiceProvider.send_msg")])
def test_a_listener_with_changed_pynetdicom_code_warns_once_and_stores_the_stock_way(
        changed: tuple[str, ...], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """An in-process StorageListener fed by dcmtk's storescu, two associations: with two
    entries' hashes not matching, one warning names both, the wake-ups and fast
    responses are never installed (pynetdicom's own loops and encoder answer), the file
    meta writer still is, and both instances are stored; with the table as recorded, no
    warning and every adaptation installed."""
    from dicom_gateway.listen import listener as listener_module
    from dicom_gateway.listen.listener import ReceivedInstance, StorageListener
    from dicom_gateway.spool import DurableFolder
    from tests.dicom_factory import make_cr, save

    for key in changed:
        monkeypatch.setitem(pynetdicom_canary.SOURCE_SHA256, key, "0" * 64)
    installed: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def called(*args: Any) -> Any:
            installed.append(name)
            return real(*args)
        return called

    for name in ("install_wakeups", "install_fast_store_response", "install_fast_file_meta"):
        monkeypatch.setattr(listener_module, name, spy(name, getattr(listener_module, name)))
    caplog.set_level(logging.WARNING, logger="dicom_gateway")
    spool = DurableFolder(tmp_path / "spool")
    monkeypatch.setattr(tempfile, "tempdir", str(spool.tmp))  # as serve sets it
    stored: list[ReceivedInstance] = []
    scp = StorageListener("CXRGATEWAY", "127.0.0.1", 0, spool, stored.append)
    scp.start()
    try:
        for n in range(2):  # one association each
            sent = save(make_cr(seed=n), tmp_path / f"{n}.dcm")
            assert_stored(subprocess.run(
                [dicom_tool("storescu"), "-aet", "SCU", "-aec", "CXRGATEWAY", "-v",
                 "127.0.0.1", str(scp.port), str(sent)],
                capture_output=True, text=True, timeout=120))
    finally:
        scp.stop()
    StorageListener("ANOTHER", "127.0.0.1", 0, spool, stored.append)  # same process: quiet
    assert len(stored) == 2 and all(r.path.is_file() for r in stored)
    warnings = [r for r in caplog.records if r.name == "dicom_gateway.listen.pynetdicom.canary"]
    if changed:
        (warning,) = warnings
        assert all(key in warning.getMessage() for key in changed)
        assert "fast_store_response, wakeups" in warning.getMessage()
        assert installed == ["install_fast_file_meta"] * 2  # once per listener
    else:
        assert warnings == []
        assert installed.count("install_wakeups") == 2
        assert installed.count("install_fast_store_response") == 2
        assert installed.count("install_fast_file_meta") == 2
    assert not [r for r in caplog.records if "own message path" in r.getMessage()]


def test_a_listener_refuses_handed_connections_when_the_server_code_changed(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    """A listener process behind a dispatcher cannot fall back to pynetdicom's own
    server (the dispatcher owns the port): it refuses to start, without a warning of
    its own (``serve`` warns, and then runs one process, before any is started)."""
    from dicom_gateway.listen.dispatch import channel_pair
    from dicom_gateway.listen.listener import StorageListener
    from dicom_gateway.spool import DurableFolder

    monkeypatch.setitem(pynetdicom_canary.SOURCE_SHA256,
                        "pynetdicom.transport.AssociationServer.get_request", "0" * 64)
    ours, theirs = channel_pair()
    try:
        scp = StorageListener("CXRGATEWAY", "127.0.0.1", 0, DurableFolder(tmp_path), lambda r: None,
                              channel=theirs)
        with pytest.raises(RuntimeError, match="CXR_LISTENER_PROCESSES=1"):
            scp.start()
        assert not [r for r in caplog.records if r.name == "dicom_gateway.listen.pynetdicom.canary"]
        assert not pynetdicom_canary.checked_at_start().usable("handed_connections")
        (warning,) = [r for r in caplog.records
                      if r.name == "dicom_gateway.listen.pynetdicom.canary"]
        assert "AssociationServer.get_request changed" in warning.getMessage()
    finally:
        ours.close()
        theirs.close()


# -- what the adaptations buy -------------------------------------------------------------

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


def _scp_with_wakeups(on_open: Callable[[Any], None], **handlers: Callable[..., Any]
                      ) -> tuple[Any, int]:
    """A bare pynetdicom SCP (Verification, CR storage) that installs the wake-ups on
    each association it accepts, then calls ``on_open`` with it."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        ComputedRadiographyImageStorage,
        Verification,
    )

    from dicom_gateway.listen.pynetdicom.compat import install_wakeups, remove_wakeups

    def opened(event: evt.Event) -> None:
        assert install_wakeups(event.assoc)
        on_open(event.assoc)

    scp = AE(ae_title="SCP")
    scp.add_supported_context(Verification)
    scp.add_supported_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[
        (evt.EVT_CONN_OPEN, opened), (evt.EVT_CONN_CLOSE, lambda e: remove_wakeups(e.assoc)),
        (evt.EVT_C_STORE, lambda e: 0x0000),
        (evt.EVT_C_ECHO, handlers.get("echo", lambda e: 0x0000))])
    return server, port


def _associate(port: int) -> Any:
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        ComputedRadiographyImageStorage,
        Verification,
    )

    scu = AE(ae_title="SCU")
    scu.add_requested_context(Verification)
    scu.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    assoc = scu.associate("127.0.0.1", port, ae_title="SCP")
    assert assoc.is_established
    return assoc


def _recording(log: list[tuple[str, float, bool]], name: str, wait: Any) -> Any:
    def recorded(seconds: float) -> bool:
        woken: bool = wait(seconds)
        log.append((name, seconds, woken))
        return woken
    return recorded


@pytest.mark.integration  # a bare pynetdicom SCP on a TCP port
def test_reactors_wait_on_work_instead_of_sleeping() -> None:
    """Both reactors of a real association go through the waits ``install_wakeups`` gives
    them (a pynetdicom that stopped calling ``time.sleep`` there would leave them unused),
    work ends some of those waits (they report it), and the association still works:
    echoes and stores answered, the wake-up sockets closed after."""
    from tests.dicom_factory import make_cr

    waits: list[tuple[str, float, bool]] = []
    pairs: list[tuple[socket.socket, socket.socket]] = []

    def on_open(assoc: Any) -> None:
        assoc._cxr_wait = _recording(waits, "assoc", assoc._cxr_wait)
        assoc.dul._cxr_wait = _recording(waits, "dul", assoc.dul._cxr_wait)
        pairs.append(assoc._cxr_wake_sockets)

    server, port = _scp_with_wakeups(on_open)
    try:
        assoc = _associate(port)
        for _ in range(20):
            assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(make_cr("1.2.3.4", view="PA", seed=1)).Status == 0x0000
        assoc.release()
        deadline = time.monotonic() + 120
        while pairs and pairs[0][0].fileno() != -1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
    assert len(pairs) == 1
    for reactor in ("assoc", "dul"):
        assert any(name == reactor and woken for name, _, woken in list(waits)), reactor
    assert all(s.fileno() == -1 for s in pairs[0])  # closed with the association


@pytest.mark.integration  # a bare pynetdicom SCP on a TCP port
def test_the_reactor_clock_waits_inside_a_reactor_thread_and_sleeps_outside(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a real association's reactor thread (its C-ECHO handler runs there) the
    clock's hour-long sleep is the association's wait, which a queued DIMSE message ends
    at once (the wait says so); in the test's own thread the same call is time.sleep."""
    from dicom_gateway.listen.pynetdicom.compat import _CLOCK

    waits: list[tuple[str, float, bool]] = []
    inside: list[bool] = []

    def on_open(assoc: Any) -> None:
        assoc._cxr_wait = _recording(waits, "assoc", assoc._cxr_wait)

    def echo(event: Any) -> int:
        inside.append(threading.current_thread() is event.assoc)
        # what the DUL thread does when a message arrives (a no-op item for the reactor)
        queued = threading.Thread(target=event.assoc.dimse.msg_queue.put, args=((None, None),))
        queued.start()
        queued.join()
        _CLOCK.sleep(3600)  # pytest-timeout fails the test long before, if not woken
        return 0x0000

    server, port = _scp_with_wakeups(on_open, echo=echo)
    try:
        assoc = _associate(port)
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        server.shutdown()
    assert inside == [True]
    assert ("assoc", 3600, True) in waits

    slept: list[tuple[int, float]] = []
    real_sleep = time.sleep

    def spy(seconds: float) -> None:
        slept.append((threading.get_ident(), seconds))
        real_sleep(seconds)

    before = len(waits)
    with monkeypatch.context() as m:
        m.setattr(time, "sleep", spy)
        _CLOCK.sleep(0.002)
    assert (threading.get_ident(), 0.002) in slept
    assert len(waits) == before  # no association's wait was used
    assert _CLOCK.monotonic is time.monotonic  # everything else is the time module's own


def test_a_wake_up_ends_a_long_wait() -> None:
    """The waits ``install_wakeups`` gives a (real, not started) acceptor association:
    each hour-long wait returns because of its wake-up (a DIMSE message queued; data on
    the connection; a PDU queued to send), and says so, where a wait with nothing to do
    says it timed out."""
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.pdu_primitives import P_DATA
    from pynetdicom.transport import AssociationSocket

    from dicom_gateway.listen.pynetdicom.compat import install_wakeups, remove_wakeups

    ours, theirs = socket.socketpair()
    assoc = Association(AE(), "acceptor")
    assoc.set_socket(AssociationSocket(assoc, client_socket=ours))
    assert install_wakeups(assoc)

    def hour_long(wait: Callable[[float], bool], wake: Callable[[], object]) -> bool:
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(wait(3600)), daemon=True)
        waiter.start()
        wake()
        waiter.join(120)
        assert result, "the wait did not end on its wake-up"
        return result[0]

    try:
        assert assoc._cxr_wait(0) is False and assoc.dul._cxr_wait(0) is False
        assert hour_long(assoc._cxr_wait, lambda: assoc.dimse.msg_queue.put((1, None)))
        assert assoc._cxr_wait(0) is False  # the wake-up was used up
        assert hour_long(assoc.dul._cxr_wait, lambda: theirs.sendall(b"\x05"))
        assert ours.recv(1) == b"\x05"
        assert hour_long(assoc.dul._cxr_wait, lambda: assoc.dul.send_pdu(P_DATA()))
        assert assoc.dul._cxr_wait(0) is False
    finally:
        remove_wakeups(assoc)
        ours.close()
        theirs.close()


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(message_id=st.integers(0, 0xFFFF), status=st.integers(0, 0xFFFF),
       sop_class=st.sampled_from(["1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.7",
                                  "1.2.840.10008.5.1.4.1.1.1.1"]),
       sop_instance=st.lists(st.integers(0, 10**12), min_size=2, max_size=12).map(
           lambda parts: ".".join(map(str, parts))[:64]).filter(lambda u: not u.endswith(".")))
def test_our_c_store_rsp_is_byte_for_byte_pynetdicoms(message_id: int, status: int,
                                                      sop_class: str, sop_instance: str) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    from dicom_gateway.listen.pynetdicom.encoding import encode_c_store_rsp

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


@pytest.mark.integration  # a bare pynetdicom SCP on a TCP port
def test_live_store_responses_skip_pydicom_unless_someone_listens(monkeypatch) -> None:
    """On a real association, plain C-STORE responses go out from our bytes (pynetdicom's
    encoder is never called) and the peer reads each status; with an EVT_DIMSE_SENT
    handler bound, pynetdicom encodes them itself, so that handler sees every message."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, _config, evt
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.sop_class import ComputedRadiographyImageStorage  # type: ignore

    from dicom_gateway.listen.pynetdicom.encoding import install_fast_store_response
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


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
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

    from dicom_gateway.listen.pynetdicom.encoding import (
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

    from dicom_gateway.listen.pynetdicom.encoding import (
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


@pytest.mark.integration  # a bare pynetdicom SCP on a TCP port
def test_a_live_store_writes_its_file_meta_without_pydicom(monkeypatch, tmp_path) -> None:
    """A real C-STORE in chunked mode: the stored file starts with the file meta our
    encoder wrote (pynetdicom's create_file_meta and pydicom's writer never called), and
    pydicom reads it back with the command's UIDs and the accepted transfer syntax."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, _config, dimse_messages, dsutils, evt
    from pynetdicom.sop_class import ComputedRadiographyImageStorage  # type: ignore

    from dicom_gateway.listen.pynetdicom import encoding as pynetdicom_encoding
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
    monkeypatch.setattr(pynetdicom_encoding, "_ORIGINAL_META", {})
    pynetdicom_encoding.install_fast_file_meta()
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


# -- pynetdicom's settings stay pynetdicom's for everyone but the listener -----------------

@pytest.mark.integration  # two servers on loopback ports
def test_other_pynetdicom_users_in_the_listeners_process_keep_pynetdicom_defaults(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With a StorageListener running (and having received in chunked mode), a C-GET SCU
    in the same process still receives its C-STORE sub-operations the stock way: the
    dataset in memory, no ``dataset_path``, pynetdicom's standard log handlers bound; and
    pynetdicom's process-wide settings are untouched."""
    from pydicom import Dataset
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE, _config, build_role, evt
    from pynetdicom._handlers import standard_pdu_recv_handler
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        ComputedRadiographyImageStorage,
        PatientRootQueryRetrieveInformationModelGet,
    )

    from dicom_gateway.listen.listener import ReceivedInstance, StorageListener
    from dicom_gateway.spool import DurableFolder
    from tests.dicom_factory import make_cr

    caplog.set_level(logging.WARNING, logger="pynetdicom")  # the listener's quiet case
    defaults = (_config.STORE_RECV_CHUNKED_DATASET, _config.LOG_HANDLER_LEVEL)
    stored: list[ReceivedInstance] = []
    listener = StorageListener("CXRGATEWAY", "127.0.0.1", 0,
                               DurableFolder(tmp_path / "spool"), stored.append)
    listener.start()
    source = make_cr(seed=3)

    def serve_get(event: evt.Event) -> Any:
        yield 1
        yield 0xFF00, source

    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(PatientRootQueryRetrieveInformationModelGet)
    pacs.add_supported_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian,
                               scu_role=True, scp_role=True)
    pacs_server = pacs.start_server(("127.0.0.1", 0), block=False,
                                    evt_handlers=[(evt.EVT_C_GET, serve_get)])
    seen: list[tuple[bool, str]] = []

    def on_sub_store(event: evt.Event) -> int:
        chunked = event.dataset_path is not None  # None: the dataset came in memory
        seen.append((chunked, str(event.dataset.SOPInstanceUID)))
        return 0x0000

    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", listener.port, ae_title="CXRGATEWAY")
        assert assoc.is_established
        assert assoc.send_c_store(make_cr(seed=4)).Status == 0x0000  # the listener's way
        assoc.release()
        getter = AE(ae_title="GETTER")
        getter.add_requested_context(PatientRootQueryRetrieveInformationModelGet)
        getter.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
        role = build_role(ComputedRadiographyImageStorage, scp_role=True)
        assoc = getter.associate("127.0.0.1", pacs_server.server_address[1], ae_title="PACS",
                                 ext_neg=[role], evt_handlers=[(evt.EVT_C_STORE, on_sub_store)])
        assert assoc.is_established
        assert any(h[0] is standard_pdu_recv_handler
                   for h in assoc.get_handlers(evt.EVT_PDU_RECV))
        query = Dataset()
        query.QueryRetrieveLevel = "PATIENT"
        query.PatientID = str(source.PatientID)
        statuses = [int(status.Status) for status, _ in assoc.send_c_get(
            query, PatientRootQueryRetrieveInformationModelGet) if status]
        assoc.release()
    finally:
        pacs_server.shutdown()
        listener.stop()
    assert len(stored) == 1 and stored[0].path.is_file()
    assert seen == [(False, str(source.SOPInstanceUID))]
    assert statuses[-1] == 0x0000
    assert (_config.STORE_RECV_CHUNKED_DATASET, _config.LOG_HANDLER_LEVEL) == defaults \
        == (False, "standard")

"""Several listener processes on one port: one association limit, one allowlist, no
orphans, and the same promise (tested with a kill -9 in tests/test_ingest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_gateway.listen.slots import AssociationSlots
from tests.peers import wait_for_port
from tests.test_end_to_end import assert_stored
from tests.test_ingest import instance_count


@pytest.mark.integration  # a second process holds a slot
def test_slots_hold_one_limit_and_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    slots = AssociationSlots(tmp_path / "slots", 3)
    held = [slots.acquire() for _ in range(2)]
    assert all(held) and slots.held() == 2
    # another process takes the last slot and dies without giving it back
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from dicom_gateway.listen.slots import AssociationSlots; "
         f"s = AssociationSlots(Path({str(tmp_path / 'slots')!r}), 3); "
         "assert s.acquire() is not None; print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert slots.acquire() is None and slots.held() == 3
    holder.kill()
    holder.wait(timeout=10)
    again = slots.acquire()  # the kernel dropped the dead process's lock
    assert again is not None
    for slot in [*held, again]:
        assert slot is not None
        slots.release(slot)
    assert slots.held() == 0


def _associate(port: int, calling: str = "TESTSCU") -> object:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="CXRGATEWAY")


def test_two_processes_keep_one_association_limit_and_one_allowlist(serve_factory) -> None:
    srv = serve_factory.new({"CXR_LISTENER_PROCESSES": "2", "CXR_MAX_ASSOCIATIONS": "3",
                             "CXR_ALLOWED_CALLING_AETS": "TESTSCU"}).start()
    children = srv.listener_processes()
    assert len(children) == 2
    # Eight tries at once: each process alone would accept three, the port only three.
    tries = [_associate(srv.port) for _ in range(8)]
    accepted = [a for a in tries if a.is_established]  # type: ignore[attr-defined]
    rejected = [a for a in tries if a.is_rejected]  # type: ignore[attr-defined]
    assert (len(accepted), len(rejected)) == (3, 5)
    for a in rejected:  # A-ASSOCIATE-RJ: transient, service provider, local limit exceeded
        rj = a.acceptor.primitive  # type: ignore[attr-defined]
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)
    # the listener processes hold them, one each: serve hands the first two tries to
    # different processes (the one with fewest open first), and both were accepted
    owners = [_owner(children, a) for a in accepted]
    assert set(owners) == set(children)
    accepted[0].release()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10  # its slot is free once the server side has ended too
    late = _associate(srv.port)
    while not late.is_established and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.2)
        late = _associate(srv.port)
    assert late.is_established  # type: ignore[attr-defined]
    for a in [*accepted[1:], late]:
        a.release()  # type: ignore[attr-defined]
    # the allowlist holds in every process (the kernel spreads these over both)
    for _ in range(6):
        stranger = _associate(srv.port, calling="STRANGER")
        assert stranger.is_rejected  # type: ignore[attr-defined]
        rj = stranger.acceptor.primitive  # type: ignore[attr-defined]
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)


def _owner(pids: list[int], assoc: object) -> int:
    """The one listener process that holds the server end of ``assoc``'s connection."""
    port = assoc.local["port"]  # type: ignore[attr-defined]
    owners = [pid for pid in pids if _owns_connection(pid, port)]
    assert len(owners) == 1, owners
    return owners[0]


def test_each_new_association_goes_to_the_process_with_fewest_open(serve_factory) -> None:
    srv = serve_factory.new({"CXR_LISTENER_PROCESSES": "2"}).start()
    children = srv.listener_processes()
    held = [_associate(srv.port) for _ in range(4)]
    assert all(a.is_established for a in held)  # type: ignore[attr-defined]
    owners = [_owner(children, a) for a in held]
    assert sorted(owners.count(pid) for pid in children) == [2, 2]  # 4 senders: 2 and 2
    # both of one process's associations end: the next two both go to that process
    busy = owners[0]
    ending = [a for a, pid in zip(held, owners, strict=True) if pid == busy]
    for a in ending:
        a.release()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    ports = [a.local["port"] for a in ending]  # type: ignore[attr-defined]
    while any(_owns_connection(busy, port) for port in ports) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # its report that they are over reaches serve as the connection closes
    late = [_associate(srv.port) for _ in range(2)]
    assert [_owner(children, a) for a in late] == [busy, busy]
    for a in [*held, *late]:
        if a.is_established:  # type: ignore[attr-defined]
            a.release()  # type: ignore[attr-defined]


def _owns_connection(pid: int, client_port: int) -> bool:
    """Whether process ``pid`` holds the server end of the connection from client_port."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == client_port and fields[9] in inodes:
            return True
    return False


def test_listener_processes_store_and_leave_with_serve(serve_factory, rg1: Path) -> None:
    srv = serve_factory.new({"CXR_LISTENER_PROCESSES": "3"}).start()
    children = srv.listener_processes()
    assert len(children) == 3
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    assert instance_count(srv.data_dir) == 1
    srv.kill()  # serve dies without a word: its listeners must not serve on alone
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    srv.start()  # the port is free for the next serve at once
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    children = srv.listener_processes()
    srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert srv.proc.wait(timeout=30) == 0  # type: ignore[union-attr]
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_a_port_in_use_is_one_error_line(serve_factory) -> None:
    first = serve_factory.new({"CXR_LISTENER_PROCESSES": "2"}).start()
    second = serve_factory.new({"CXR_LISTENER_PROCESSES": "2", "CXR_PORT": str(first.port)})
    with second.log.open("ab") as fh:
        proc = subprocess.run([str(Path(sys.executable).parent / "cxr-gateway"), "serve"],
                              env=second.env, stdout=fh, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert proc.returncode == 2
    # exactly one line, the error, and no traceback: what a person reads on a terminal
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: ") and f"port {first.port} on 127.0.0.1 is in use" in line
    assert "Traceback" not in proc.stderr
    wait_for_port(first.port)  # the first gateway still serves



def test_a_listener_process_that_dies_is_started_again(serve_factory, rg1: Path) -> None:
    srv = serve_factory.new({"CXR_LISTENER_PROCESSES": "2"}).start()
    first, second = srv.listener_processes()
    os.kill(first, signal.SIGKILL)  # the out-of-memory killer, say
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = srv.listener_processes()
        if len(now) == 2 and first not in now:
            break
        time.sleep(0.1)
    assert second in now and len(now) == 2 and first not in now
    for _ in range(4):  # the restarted process takes its share again
        assert_stored(srv.storescu(rg1, extra=("-v",)))
    assert "listener process 0 (pid" in srv.log.read_text() or \
        "listener process 1 (pid" in srv.log.read_text()

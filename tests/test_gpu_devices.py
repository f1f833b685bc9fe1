"""One GPU worker per visible device: the mapping (fake device lists), the supervisor
(real child processes), and `cxr-gateway worker --per-device` on Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.peers import BIN, RedisServer, fresh_database
from worker.pipeline.gpu_devices import (
    DeviceError,
    DeviceSupervisor,
    check_device_setting,
    child_env,
    child_hostname,
    parse_cuda_visible,
    parse_nvidia_smi,
    parse_nvidia_visible,
    visible_devices,
)
from worker.store.db import Database, WorkerProcess

UUID0 = "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"
UUID1 = "GPU-0e1c2f6b-7a11-4c3e-9d0a-2b5f7e9c1d42"
MIG0 = "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"
MIG1 = "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb"
SMI = f"""GPU 0: NVIDIA H100 80GB HBM3 (UUID: {UUID0})
GPU 1: NVIDIA A100-SXM4-40GB (UUID: {UUID1})
  MIG 3g.20gb     Device  0: (UUID: {MIG0})
  MIG 3g.20gb     Device  1: (UUID: {MIG1})
"""


def no_probe() -> list[str]:
    raise AssertionError("the environment named the devices; the hardware is not asked")


@pytest.mark.parametrize(("env", "expected"), [
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, ["0", "1", "2", "3"]),
    ({"CUDA_VISIBLE_DEVICES": " 2, 3 "}, ["2", "3"]),
    ({"CUDA_VISIBLE_DEVICES": f"{UUID1},{UUID0}"}, [UUID1, UUID0]),
    ({"CUDA_VISIBLE_DEVICES": f"{MIG0},{MIG1}"}, [MIG0, MIG1]),
    ({"CUDA_VISIBLE_DEVICES": "0,1,-1,2"}, ["0", "1"]),  # CUDA stops at an invalid entry
    ({"CUDA_VISIBLE_DEVICES": "1,1,2"}, ["1"]),
    ({"CUDA_VISIBLE_DEVICES": ""}, []),  # set but empty: CUDA shows no GPU
    ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
    # CUDA_VISIBLE_DEVICES wins over what the container toolkit was told
    ({"CUDA_VISIBLE_DEVICES": "1", "NVIDIA_VISIBLE_DEVICES": "all"}, ["1"]),
    # in a container, host indices are renumbered from 0; UUIDs stay what they are
    ({"NVIDIA_VISIBLE_DEVICES": "2,3"}, ["0", "1"]),
    ({"NVIDIA_VISIBLE_DEVICES": f"{UUID0},{MIG1}"}, [UUID0, MIG1]),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "none"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": ""}, []),
])
def test_devices_named_by_the_environment(env: dict[str, str], expected: list[str]) -> None:
    assert visible_devices(env, probe=no_probe) == expected


def test_all_or_nothing_set_asks_the_hardware() -> None:
    asked: list[bool] = []

    def probe() -> list[str]:
        asked.append(True)
        return ["0", "1"]

    assert visible_devices({"NVIDIA_VISIBLE_DEVICES": "all"}, probe) == ["0", "1"]
    assert visible_devices({}, probe) == ["0", "1"]
    assert len(asked) == 2


def test_nvidia_smi_listing_gives_mig_instances_in_place_of_their_gpu() -> None:
    assert parse_nvidia_smi(SMI) == [UUID0, MIG0, MIG1]
    assert parse_nvidia_smi(f"GPU 0: NVIDIA L4 (UUID: {UUID0})\n") == [UUID0]
    assert parse_nvidia_smi("No devices found.\n") == []


@pytest.mark.parametrize("value", ["0:0,0:1", "0,GPU-abc"])
def test_device_lists_that_cannot_be_split_per_process_are_refused(value: str) -> None:
    with pytest.raises(DeviceError):
        parse_nvidia_visible(value)


def test_a_cuda_list_is_read_as_cuda_reads_it() -> None:
    assert parse_cuda_visible("0,x,1") == ["0"]
    assert parse_cuda_visible(f"{MIG0}") == [MIG0]


def test_each_child_sees_one_device_as_cuda0_and_has_a_name_saying_which() -> None:
    env = child_env({"CXR_DEVICE": "auto", "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1"},
                    "1")
    assert (env["CUDA_VISIBLE_DEVICES"], env["CXR_DEVICE"], env["PATH"]) == \
        ("1", "cuda:0", "/bin")
    assert child_hostname(None, 1) == "worker-gpu1-%p@%h"
    assert child_hostname("gpu@node7", 0) == "gpu-gpu0-%p@node7"
    for ok in ("auto", "cuda", "cuda:0"):
        check_device_setting(ok)
    for contradiction in ("cpu", "cuda:1"):
        with pytest.raises(DeviceError):
            check_device_setting(contradiction)


# -- the supervisor, with real child processes ----------------------------------------

CHILD = ("import json, os, sys, time; from pathlib import Path; "
         "Path(sys.argv[1], str(os.getpid())).write_text(json.dumps({k: os.environ.get(k) "
         "for k in ('CUDA_VISIBLE_DEVICES', 'CXR_DEVICE')})); "
         "sys.exit(int(sys.argv[2])) if len(sys.argv) > 2 else time.sleep(300)")


def until(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def seen(folder: Path) -> dict[int, dict[str, str]]:
    out = {}
    for p in folder.iterdir():
        try:
            out[int(p.name)] = json.loads(p.read_text())
        except ValueError:  # being written
            continue
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and \
        "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.integration
def test_supervisor_pins_each_child_and_starts_a_dead_one_again(tmp_path: Path) -> None:
    sup = DeviceSupervisor(["0", "1"], lambda i: [sys.executable, "-c", CHILD, str(tmp_path)],
                           {"PATH": os.environ["PATH"]}, grace=10)
    sup.start()
    try:
        assert until(lambda: len(seen(tmp_path)) == 2)
        first = seen(tmp_path)
        assert sorted(v["CUDA_VISIBLE_DEVICES"] for v in first.values()) == ["0", "1"]
        assert {v["CXR_DEVICE"] for v in first.values()} == {"cuda:0"}
        victim = next(pid for pid, v in first.items() if v["CUDA_VISIBLE_DEVICES"] == "1")
        os.kill(victim, signal.SIGKILL)
        assert until(lambda: sup.supervise_once() is None and len(seen(tmp_path)) == 3)
        (new,) = set(seen(tmp_path)) - set(first)
        assert seen(tmp_path)[new]["CUDA_VISIBLE_DEVICES"] == "1"  # the same device again
        assert [c.restarts for c in sup.children] == [0, 1]
    finally:
        sup.stop()
    assert not any(alive(pid) for pid in seen(tmp_path))


@pytest.mark.integration
def test_a_child_start_up_error_stops_every_child(tmp_path: Path) -> None:
    def argv(i: int) -> list[str]:  # device 1's worker cannot start (exit status 2)
        return [sys.executable, "-c", CHILD, str(tmp_path), *(["2"] if i == 1 else [])]

    sup = DeviceSupervisor(["0", "1"], argv, {"PATH": os.environ["PATH"]}, grace=10)
    sup.start()
    assert until(lambda: len(seen(tmp_path)) == 2)
    assert sup.run(tick=0.1) == 2
    assert len(seen(tmp_path)) == 2  # each started once; the failed one not again
    assert not any(alive(pid) for pid in seen(tmp_path))


# -- `cxr-gateway worker --per-device` on Redis and PostgreSQL ------------------------

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    redis = RedisServer(tmp_path).start()
    url, drop = fresh_database()
    Database(url).migrate()  # what serve does first
    try:
        yield {**os.environ, "CXR_BROKER_URL": redis.url, "CXR_DATABASE_URL": url,
               "CXR_DATA_DIR": str(tmp_path / "data"), "CXR_MODEL_BACKEND": "mock",
               "CXR_HEARTBEAT_SECONDS": "1", "CUDA_VISIBLE_DEVICES": "0,1"}
    finally:
        redis.stop()
        drop()


def workers(url: str) -> list[WorkerProcess]:
    with Database(url).session() as s:
        return list(s.scalars(select(WorkerProcess).where(WorkerProcess.kind == "worker")))


def device_of(pid: int) -> str:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(e for e in env if e.startswith(b"CUDA_VISIBLE_DEVICES=")).decode()[21:]


def catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a SIGTERM handler (Celery installs one as its worker starts)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:"))[7:], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.integration
def test_per_device_worker_registers_one_process_per_gpu(cluster: dict[str, str],
                                                         tmp_path: Path) -> None:
    url, host = cluster["CXR_DATABASE_URL"], socket.gethostname()
    log = (tmp_path / "worker.log").open("wb")
    parent = subprocess.Popen([str(BIN / "cxr-gateway"), "worker", "--queues", "gpu",
                               "--per-device"], env=cluster, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        def live() -> list[WorkerProcess]:  # registered, not stopped, and running
            return [w for w in workers(url) if w.stopped_at is None and alive(w.pid)]

        assert until(lambda: len(live()) == 2, timeout=120), (tmp_path / "worker.log"
                                                                ).read_text()[-3000:]
        rows = sorted(live(), key=lambda w: w.name)
        assert [w.name for w in rows] == [f"worker-gpu{i}-{w.pid}@{host}"
                                          for i, w in enumerate(rows)]
        assert [device_of(w.pid) for w in rows] == ["0", "1"]  # each its own device
        assert {w.queues for w in rows} == {"gpu"}
        # a GPU worker killed (out of memory, say) is started again on its device
        os.kill(rows[1].pid, signal.SIGKILL)
        assert until(lambda: not alive(rows[1].pid) and len(live()) == 2, timeout=120)
        (again,) = [w for w in live() if w.pid != rows[0].pid]
        assert again.name == f"worker-gpu1-{again.pid}@{host}" and again.pid != rows[1].pid
        assert device_of(again.pid) == "1"
        # SIGTERM reaches every child: each says it is gone, then the supervisor exits
        # (once both are past loading the model, when Celery's handler is in place)
        assert until(lambda: catches_sigterm(rows[0].pid) and catches_sigterm(again.pid),
                     timeout=120)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0
        stopped = {w.pid: w.stopped_at for w in workers(url)}
        assert stopped[rows[0].pid] is not None and stopped[again.pid] is not None
        assert not alive(rows[0].pid) and not alive(again.pid)
    finally:
        if parent.poll() is None:
            parent.kill()
        log.close()


@pytest.mark.integration
def test_per_device_children_stop_when_the_supervisor_is_killed(cluster: dict[str, str],
                                                                tmp_path: Path) -> None:
    url = cluster["CXR_DATABASE_URL"]
    with (tmp_path / "worker.log").open("wb") as log:
        parent = subprocess.Popen([str(BIN / "cxr-gateway"), "worker", "--queues", "gpu",
                                   "--per-device"], env=cluster, stdout=log,
                                  stderr=subprocess.STDOUT)
    assert until(lambda: len([w for w in workers(url) if w.stopped_at is None]) == 2,
                 timeout=120), (tmp_path / "worker.log").read_text()[-3000:]
    pids = [w.pid for w in workers(url)]
    assert until(lambda: all(catches_sigterm(pid) for pid in pids), timeout=120)
    parent.kill()  # no SIGTERM to forward: the kernel's parent-death signal does it
    parent.wait(timeout=10)
    assert until(lambda: not any(alive(pid) for pid in pids), timeout=60)
    assert all(w.stopped_at is not None for w in workers(url))  # each stopped cleanly


@pytest.mark.integration
def test_per_device_without_a_gpu_is_one_error_line(tmp_path: Path) -> None:
    env = {**os.environ, "CXR_BROKER_URL": "redis://127.0.0.1:1/0",
           "CXR_DATA_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([str(BIN / "cxr-gateway"), "worker", "--queues", "gpu",
                          "--per-device"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("error: --per-device found no GPU")

"""The embedded broker shows a consumer whole messages only."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection
from pydicom import dcmread

import worker.pipeline.embedded_broker as embedded_broker
from tests.test_end_to_end import assert_stored, wait_job


def test_a_message_being_written_is_invisible_to_the_consumer(tmp_path: Path,
                                                              monkeypatch) -> None:
    folder = tmp_path / "queue"
    folder.mkdir()
    conn = Connection("filesystem://localhost//", transport=embedded_broker.TRANSPORT,
                      transport_options={"data_folder_in": str(folder),
                                         "data_folder_out": str(folder),
                                         "store_processed": False})
    channel: Any = conn.default_channel
    received: list[int] = []
    real_dumps = embedded_broker.dumps

    def dumps_while_a_consumer_polls(payload: Any) -> str:
        # kombu's own _put has created this message's file by now, still empty: a
        # consumer polling here took it and failed on it (JSONDecodeError)
        with contextlib.suppress(Empty):
            received.append(channel._get("cpu")["n"])
        return str(real_dumps(payload))

    monkeypatch.setattr(embedded_broker, "dumps", dumps_while_a_consumer_polls)
    # kombu's own Channel calls its module's dumps: with it, this test fails as CI did
    monkeypatch.setattr(embedded_broker.filesystem, "dumps", dumps_while_a_consumer_polls)
    for n in range(20):
        channel._put("cpu", {"n": n})
    while True:
        try:
            received.append(channel._get("cpu")["n"])
        except Empty:
            break
    assert received == list(range(20))  # each whole, once, in order
    assert list(folder.iterdir()) == []
    conn.release()


def test_serve_starts_its_worker_again_after_an_unreadable_message(serve_factory,
                                                                   rg1: Path) -> None:
    srv = serve_factory.new().start()
    (srv.data_dir / "broker" / "queue" / "0_unreadable.cpu.msg").write_text("")
    deadline = time.monotonic() + 30
    while "starting it again" not in srv.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Unrecoverable error" in srv.log.read_text()  # Celery ended its worker
    assert_stored(srv.storescu(rg1, extra=("-v",)))
    study = str(dcmread(rg1, stop_before_pixels=True).StudyInstanceUID)
    assert wait_job(srv.data_dir, study, ("done",), timeout=60).state == "done"

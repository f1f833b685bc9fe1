"""The spool's atomic writes and UID validation before any path is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_gateway.spool import DurableFolder
from dicom_gateway.uids import InvalidUID, derived_uid, is_valid_uid


def test_write_is_complete_and_leaves_no_temp(tmp_path: Path) -> None:
    spool = DurableFolder(tmp_path)
    f = spool.write("1.2.3", "1.2.3.4", [b"ab", b"cd"])
    assert f.path.read_bytes() == b"abcd" and f.size == 4 and not f.existed
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert spool.write("1.2.3", "1.2.3.4", [b"abcd"]).existed


def test_failed_write_leaves_nothing_visible(tmp_path: Path) -> None:
    spool = DurableFolder(tmp_path)

    def chunks():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise ConnectionResetError("peer aborted")

    with pytest.raises(ConnectionResetError):
        spool.write("1.2.3", "1.2.3.5", chunks())
    assert not (tmp_path / "1.2.3" / "1.2.3.5.dcm").exists()
    assert list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize("bad", ["../../etc", "1.2.03", "1..2", "", "1.2.3/4", "a.b", "1" * 65])
def test_path_unsafe_uids_are_refused(tmp_path: Path, bad: str) -> None:
    assert not is_valid_uid(bad)
    with pytest.raises(InvalidUID):
        DurableFolder(tmp_path).path_for(bad, "1.2.3")


def test_derived_uid_is_stable_and_valid() -> None:
    a = derived_uid("sr", "1.2.3", "1")
    assert a == derived_uid("sr", "1.2.3", "1") != derived_uid("sr", "1.2.3", "2")
    assert is_valid_uid(a) and a.startswith("2.25.")


@pytest.mark.parametrize("size", [40_000, 3 << 20])  # small: in turn; large: overlapped
def test_adopt_hashes_and_syncs_before_the_rename(tmp_path: Path, size: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import os

    spool = DurableFolder(tmp_path / "spool")
    received = spool.tmp / "incoming.dcm"
    content = os.urandom(size)
    received.write_bytes(content)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.fstat(fd).st_size == size:
            events.append("fsync")

    def replace(src: object, dst: object) -> None:
        events.append("rename")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    spooled = spool.adopt("1.2.3", "1.2.3.4", received)
    assert events == ["fsync", "rename"]
    assert spooled.sha256 == hashlib.sha256(content).hexdigest() and spooled.size == size
    assert spooled.path.read_bytes() == content and not received.exists()

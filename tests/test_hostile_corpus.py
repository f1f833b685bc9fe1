"""The hostile corpus itself: each crafted case damages what its name says, whatever
the lengths of the UIDs generated for it (they vary: pydicom's ``generate_uid`` gives
58 to 64 characters, so offsets found in one dataset's bytes do not carry over)."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from dicom_gateway.listen.store_checks import Refusal, check_received
from tests import hostile_corpus
from tests.hostile_corpus import PIXEL_TAG, HostileCase, corpus

LENGTHS = {"PixelData length 0xFFFFFFF0": (b"OW", 0xFFFFFFF0),
           "PixelData odd length": (b"OW", 8191),
           "native PixelData of undefined length": (b"OB", 0xFFFFFFFF)}


@pytest.fixture(scope="module", params=[64, 60, 57], ids=lambda n: f"uids of {n} characters")
def uneven_corpus(request: pytest.FixtureRequest) -> list[HostileCase]:
    """The corpus with UIDs of about one length: every other dataset (three UIDs each)
    gets them two characters shorter, so datasets built one after another differ in
    layout as generated ones sometimes do."""
    counter = itertools.count()

    def uid() -> UID:
        n = next(counter)
        size = request.param - 2 * ((n // 3) % 2)
        return UID(f"1.2.3.{n + 1}." + "9" * (size - len(f"1.2.3.{n + 1}.")))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hostile_corpus, "generate_uid", uid)
        return corpus()


def stored_file(case: HostileCase, folder: Path) -> Path:
    """The file a listener writes for the case: preamble, file meta, the bytes sent."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = case.sop_class_uid
    meta.MediaStorageSOPInstanceUID = case.sop_instance_uid
    meta.TransferSyntaxUID = case.transfer_syntax
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta)
    path = folder / "case.dcm"
    path.write_bytes(fp.getvalue() + case.data)
    return path


def test_pixel_headers_are_rewritten_where_the_pixel_data_is(
        uneven_corpus: list[HostileCase]) -> None:
    by_name = {c.name: c for c in uneven_corpus}
    for name, (vr, length) in LENGTHS.items():
        data = by_name[name].data
        at = data.index(PIXEL_TAG)
        assert data.count(PIXEL_TAG) == 1, name
        assert data[at:at + 12] == PIXEL_TAG + struct.pack("<2sHL", vr, 0, length), name
        assert len(data) - at - 12 == 64 * 64 * 2, name  # the pixel bytes themselves stay


def test_an_absurd_pixel_length_is_refused_as_not_whole(
        uneven_corpus: list[HostileCase], tmp_path: Path) -> None:
    case = next(c for c in uneven_corpus if c.name == "PixelData length 0xFFFFFFF0")
    got = check_received(stored_file(case, tmp_path), case.sop_instance_uid,
                         case.sop_class_uid)
    assert isinstance(got, Refusal) and got.status == 0xA900
    assert got.reason == ("not whole: native pixel data holds 4294967280 bytes; "
                          "the header declares 8192")


def test_truncations_cut_where_their_names_say(uneven_corpus: list[HostileCase]) -> None:
    cuts = {c.name: c for c in uneven_corpus if c.name.startswith("truncated at byte")}
    assert len(cuts) == 10
    # cut 3 bytes before the pixel data's tag: the bytes end 3 short of it
    before = cuts["truncated at byte pixel data - 3"].data
    assert PIXEL_TAG not in before
    after = cuts["truncated at byte pixel data + 6"].data
    assert after.endswith(PIXEL_TAG + b"OW")

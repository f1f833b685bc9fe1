"""C-STORE-RSP and File Meta Information written from bytes built here, not by pydicom.

Two of the listener's adaptations of pynetdicom internals (declared, like the others, in
``RELIES_ON``; ``dicom_gateway/listen/pynetdicom/canary.py`` hashes the code they assume):

* pynetdicom encodes every response with pydicom, writing the command set twice (once
  to measure its group length): about 0.3 ms for a C-STORE-RSP, a tenth of our CPU per
  small instance.  ``install_fast_store_response`` sends a plain C-STORE-RSP (status
  only, no comment or offending element) from bytes built here instead, byte for byte
  what pynetdicom would send (``tests/test_pynetdicom_compat.py`` compares them), and
  leaves every other message, and every message when someone listens to
  ``EVT_DIMSE_SENT`` (pynetdicom's own debug log does), to pynetdicom.
* Likewise for the File Meta Information pynetdicom writes before each dataset it
  receives in chunked mode: ``install_fast_file_meta`` writes the same bytes without
  building a pydicom dataset (about 0.2 ms per instance).
"""

from __future__ import annotations

import re
import struct
from typing import Any

from pynetdicom import dimse_messages as _dimse_messages
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

_PN = "pynetdicom."
RELIES_ON: dict[str, tuple[str, ...]] = {
    # install_fast_store_response: a C-STORE-RSP byte for byte pynetdicom's
    "fast_store_response": (
        _PN + "dimse.DIMSEServiceProvider.send_msg",
        _PN + "dimse.DIMSEServiceProvider.maximum_pdu_size.fget",
        _PN + "dimse_messages.DIMSEMessage.encode_msg",
        _PN + "dimse_messages.DIMSEMessage.primitive_to_message",
        _PN + "dimse_messages.C_STORE_RSP",
        _PN + "service_class.StorageServiceClass.SCP",  # self.dimse.send_msg(rsp, cx_id)
        _PN + "association.Association.get_handlers",
        _PN + "dul.DULServiceProvider.send_pdu",
        _PN + "pdu_primitives.P_DATA.presentation_data_value_list.fset",
    ),
    # install_fast_file_meta: the two names decode_msg calls, and the bytes they write
    "fast_file_meta": (
        _PN + "dimse_messages.DIMSEMessage.decode_msg",
        _PN + "dsutils.create_file_meta",
        "pydicom.filewriter.write_file_meta_info",
    ),
}


def _element(tag: int, value: bytes) -> bytes:
    """One implicit VR little endian element of a command set (group 0000)."""
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def encode_c_store_rsp(message_id: int, sop_class_uid: str, sop_instance_uid: str,
                       status: int) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2) with status only, as pynetdicom
    writes it: implicit VR little endian, elements in tag order, group length first."""
    body = b"".join((
        _element(0x0002, _ui(sop_class_uid)),  # Affected SOP Class UID
        _element(0x0100, struct.pack("<H", 0x8001)),  # Command Field: C-STORE-RSP
        _element(0x0120, struct.pack("<H", message_id)),  # Message ID Being Responded To
        _element(0x0800, struct.pack("<H", 0x0101)),  # Command Data Set Type: none
        _element(0x0900, struct.pack("<H", status)),  # Status
        _element(0x1000, _ui(sop_instance_uid)),  # Affected SOP Instance UID
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def install_fast_store_response(assoc: Any) -> bool:
    """Send this association's plain C-STORE responses from ``encode_c_store_rsp``."""
    dimse = getattr(assoc, "dimse", None)
    original = getattr(dimse, "send_msg", None)
    if dimse is None or original is None:
        return False

    def send_msg(primitive: Any, context_id: int) -> None:
        if type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None \
                and primitive.ErrorComment is None and primitive.OffendingElement is None \
                and primitive.Status is not None \
                and not assoc.get_handlers(evt.EVT_DIMSE_SENT):
            command = encode_c_store_rsp(
                primitive.MessageIDBeingRespondedTo, primitive.AffectedSOPClassUID or "",
                primitive.AffectedSOPInstanceUID or "", primitive.Status)
            limit = dimse.maximum_pdu_size
            if primitive.AffectedSOPClassUID and primitive.AffectedSOPInstanceUID and \
                    (not limit or len(command) + 6 <= limit):
                pdata = P_DATA()
                # a list, not the tuple the type hint names: pynetdicom checks at run time
                pdata.presentation_data_value_list = [
                    [context_id, b"\x03" + command]]  # type: ignore[list-item]
                dimse.dul.send_pdu(pdata)
                return
        original(primitive, context_id)

    dimse.send_msg = send_msg
    return True


# -- File Meta Information of a dataset received in chunked mode --------------------------

_PLAIN_UID = re.compile(r"[0-9.]{1,64}")
_PLAIN_SH = re.compile(r"[ -\[\]-~]{1,16}")  # printable ASCII without backslash


def _explicit(element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of group 0002 with a 2-byte length."""
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
                     implementation_uid: str, implementation_version: str) -> bytes | None:
    """The File Meta Information (PS3.10 7.1) pynetdicom writes before a dataset received in
    chunked mode, as pydicom's ``write_file_meta_info`` encodes it (after the preamble and
    ``DICM``); None for a value outside plain UIDs and an ASCII version name, which is
    left to pydicom."""
    uids = (sop_class_uid, sop_instance_uid, transfer_syntax, implementation_uid)
    if not all(isinstance(u, str) and _PLAIN_UID.fullmatch(u) for u in uids) or not (
            isinstance(implementation_version, str)
            and _PLAIN_SH.fullmatch(implementation_version)):
        return None
    version = implementation_version.encode("ascii")
    body = b"".join((
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",  # version 1
        _explicit(0x0002, b"UI", _ui(sop_class_uid)),  # Media Storage SOP Class UID
        _explicit(0x0003, b"UI", _ui(sop_instance_uid)),  # Media Storage SOP Instance UID
        _explicit(0x0010, b"UI", _ui(transfer_syntax)),
        _explicit(0x0012, b"UI", _ui(implementation_uid)),
        _explicit(0x0013, b"SH", version + b" " if len(version) % 2 else version),
    ))
    return _explicit(0x0000, b"UL", struct.pack("<I", len(body))) + body


class _EncodedFileMeta(bytes):
    """File meta bytes from ``encode_file_meta``, standing in for pynetdicom's dataset."""


_ORIGINAL_META: dict[str, Any] = {}


def _create_file_meta(**kwargs: Any) -> Any:
    create = _ORIGINAL_META["create_file_meta"]
    defaults = create.__kwdefaults__ or {}
    values: tuple[Any, ...] = (
        kwargs.get("sop_class_uid"), kwargs.get("sop_instance_uid"),
        kwargs.get("transfer_syntax"),
        kwargs.get("implementation_uid", defaults.get("implementation_uid")),
        kwargs.get("implementation_version", defaults.get("implementation_version")))
    encoded = encode_file_meta(*values)  # values that are not plain strings: pydicom's
    return _EncodedFileMeta(encoded) if encoded is not None else create(**kwargs)


def _write_file_meta_info(fp: Any, file_meta: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(file_meta, _EncodedFileMeta):
        fp.write(file_meta)
    else:
        _ORIGINAL_META["write_file_meta_info"](fp, file_meta, *args, **kwargs)


def install_fast_file_meta() -> None:
    """Have pynetdicom write the file meta of each dataset it receives in chunked mode from
    ``encode_file_meta``.

    For every C-STORE it builds a pydicom ``FileMetaDataset`` and has pydicom validate and
    write it, group length included (about 0.2 ms, a tenth of a small instance's round
    trip).  The two names ``DIMSEMessage.decode_msg`` calls are replaced in pynetdicom's
    ``dimse_messages`` module only; the bytes are the same (a hypothesis test compares
    them with pynetdicom's and pydicom's own), so doing it for the whole process changes
    nothing anyone can see.
    """
    if _dimse_messages.create_file_meta is _create_file_meta:
        return
    _ORIGINAL_META["create_file_meta"] = _dimse_messages.create_file_meta
    _ORIGINAL_META["write_file_meta_info"] = _dimse_messages.write_file_meta_info
    _dimse_messages.create_file_meta = _create_file_meta
    _dimse_messages.write_file_meta_info = _write_file_meta_info

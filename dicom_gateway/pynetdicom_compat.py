"""The few places where the listener relies on pynetdicom internals, kept in one file.

pynetdicom gives no public hook for them; each is small, and
``tests/test_pynetdicom_compat.py`` fails when an upgrade changes the code they rely on
(the names below, read from pynetdicom's own source), so a silent change cannot slip in.

* A C-STORE received in chunked mode (``STORE_RECV_CHUNKED_DATASET``) is written to a
  ``NamedTemporaryFile(delete=False)`` held by the association's partial DIMSE message
  (``assoc.dimse.message._data_set_file`` / ``_data_set_path``).  If the peer drops the
  association mid-transfer, pynetdicom leaves that file behind; a misbehaving peer could
  fill the disk with them.  ``discard_partial_dataset`` removes it when the association
  ends.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# What this module reads, for the compatibility test.
RELIES_ON = {
    "pynetdicom.dimse_messages.DIMSEMessage.decode_msg": ("_data_set_file", "_data_set_path",
                                                          "NamedTemporaryFile(delete=False"),
    "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive": ("self.message = None",),
}


def discard_partial_dataset(assoc: Any) -> Path | None:
    """Close and delete the temporary file of a dataset that never finished arriving.

    Only a message still being received holds one: a complete message is handed on and
    ``dimse.message`` reset to None before the C-STORE handler runs.
    """
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    if message is None:
        return None
    handle = getattr(message, "_data_set_file", None)
    path = getattr(message, "_data_set_path", None)
    if isinstance(path, tuple):
        path = path[0]
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    if not path:
        return None
    path = Path(path)
    with contextlib.suppress(OSError):
        path.unlink()
        message._data_set_file = None
        message._data_set_path = None
        return path
    return None

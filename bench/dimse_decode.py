"""CPU cost of decoding one C-STORE-RQ as the listener receives it (chunked mode), with
pynetdicom's own File Meta Information writer and with ``install_fast_file_meta``.

No network and no disk sync: pynetdicom's ``DIMSEMessage.decode_msg`` is fed the P-DATA
primitives of a small CR instance, as its association thread would be, and writes the
dataset to a temporary file.  Both variants run in the same process, alternating, and
the ratio is printed.  Ends with ``RESULT dimse_decode_ms=<ours> baseline_ms=<pynetdicom's>
speedup=<x>``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pynetdicom import _config, dimse_messages  # noqa: E402
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage  # noqa: E402
from pynetdicom.dimse_primitives import C_STORE  # noqa: E402
from pynetdicom.dsutils import encode  # noqa: E402

from dicom_gateway.listen.pynetdicom import encoding as pynetdicom_encoding  # noqa: E402
from tests.dicom_factory import make_cr  # noqa: E402


def decode_time(pdatas: list[object], assoc: object, n: int) -> float:
    """Mean seconds to decode one message (and remove the file it wrote)."""
    start = time.perf_counter()
    for _ in range(n):
        message = DIMSEMessage()
        for pdata in pdatas:
            message.decode_msg(pdata, assoc)  # type: ignore[arg-type]
        message._data_set_file.close()  # type: ignore[attr-defined]
        os.unlink(message._data_set_path)  # type: ignore[attr-defined]
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000, help="per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    _config.STORE_RECV_CHUNKED_DATASET = True
    ds = make_cr("1.2.3.4", view="PA", seed=1)
    req = C_STORE()
    req.MessageID, req.Priority = 1, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    req.DataSet = io.BytesIO(encode(ds, False, True))
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    pdatas = list(message.encode_msg(1, 131072))
    assoc = SimpleNamespace(_accepted_cx={1: SimpleNamespace(
        transfer_syntax=["1.2.840.10008.1.2.1"])})
    theirs = (dimse_messages.create_file_meta, dimse_messages.write_file_meta_info)
    pynetdicom_encoding.install_fast_file_meta()
    ours = (dimse_messages.create_file_meta, dimse_messages.write_file_meta_info)
    times: dict[str, list[float]] = {"pynetdicom": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="cxr-dimse-decode-") as tmp:
        tempfile.tempdir = tmp
        for _name, pair in (("pynetdicom", theirs), ("ours", ours)):  # warm up
            dimse_messages.create_file_meta, dimse_messages.write_file_meta_info = pair
            decode_time(pdatas, assoc, 200)
        for _ in range(args.rounds):
            for name, pair in (("pynetdicom", theirs), ("ours", ours)):
                dimse_messages.create_file_meta, dimse_messages.write_file_meta_info = pair
                times[name].append(decode_time(pdatas, assoc, args.messages))
    base, fast = statistics.median(times["pynetdicom"]), statistics.median(times["ours"])
    print(f"decode one C-STORE-RQ ({len(req.DataSet.getvalue())} byte dataset), median of "
          f"{args.rounds} rounds x {args.messages}:")
    print(f"  pynetdicom's file meta  {base * 1e3:6.3f} ms")
    print(f"  ours                    {fast * 1e3:6.3f} ms")
    print(f"RESULT dimse_decode_ms={fast * 1e3:.3f} baseline_ms={base * 1e3:.3f} "
          f"speedup={base / fast:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Jobs waiting for a GPU worker, made straight in the database (what ``prepare`` leaves).

The inference tests and ``bench/engine.py`` need hundreds of them; going through the
listener, the assembler and the conversion would measure those instead.  Each gets its own
small model-input PNG, so a server that reads the image (the vLLM stand-in) answers each
differently and a test can tell the studies apart by the image's sha256.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image
from pydicom.uid import generate_uid
from sqlalchemy import insert

from worker.store import jobs
from worker.store.db import Database, Job, now


def model_input(seed: int, size: int = 32) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def realistic_inputs(count: int) -> list[bytes]:
    """``count`` model inputs the size a real chest radiograph converts to (pydicom-data's
    RG1, through the gateway's conversion), each made distinct by bytes after its IEND
    (which a PNG reader ignores and the stand-in's hash does not)."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from dicom_gateway.imaging.conversion import convert_dataset

    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    png = convert_dataset(dcmread(str(path))).png
    return [png + i.to_bytes(4, "big") for i in range(count)]


def make_prepared(db: Database, count: int, priority: int = 0, first_seed: int = 0,
                  images: list[bytes] | None = None) -> dict[int, str]:
    """``count`` prepared jobs at ``priority``, oldest first; job id -> its image's sha256.
    With ``images``, job i gets ``images[i % len]`` with its own suffix (so each differs)."""
    t = now()
    images = [model_input(first_seed + i) for i in range(count)] if not images else \
        [images[i % len(images)] + (first_seed + i).to_bytes(8, "big") for i in range(count)]
    rows = [{"study_instance_uid": generate_uid(), "version": 1,
             "sop_instance_uid": generate_uid(), "state": jobs.PREPARED,
             "created_at": t + i * 1e-6, "updated_at": t, "source_header": "{}",
             "priority": priority, "model_input": png} for i, png in enumerate(images)]
    with db.session() as s:
        ids = s.scalars(insert(Job).returning(Job.id, sort_by_parameter_order=True),
                         rows).all()
        s.commit()
    return {job_id: hashlib.sha256(png).hexdigest() for job_id, png in zip(ids, images,
                                                                            strict=True)}

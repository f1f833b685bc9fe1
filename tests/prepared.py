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


def make_prepared(db: Database, count: int, priority: int = 0, first_seed: int = 0
                  ) -> dict[int, str]:
    """``count`` prepared jobs at ``priority``, oldest first; job id -> its image's sha256."""
    t = now()
    images = [model_input(first_seed + i) for i in range(count)]
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

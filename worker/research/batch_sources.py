"""Where a batch's studies come from: one small class per kind of source, one interface.

A source lists its studies once (``studies``) and then brings one study at a time into
the gateway (``fetch``).  The run loop (``worker.research.batch``) knows only this
interface; which class serves a run is decided once, by ``make_source`` from the kind
stored in ``batch_runs.kind`` (``folder``, ``images``, ``pacs``, ``dicomweb``; those
strings are what existing installations' rows hold, so they never change).

DICOM sources share one rule (``DicomSource``): a study the gateway already holds is not
fetched again; its job is reused or made again for this run's model settings.  A CSV of
PNG/JPEG images skips DICOM admission and conversion and makes its job directly.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydicom import Dataset, dcmread
from sqlalchemy import select, update

from dicom_gateway.transfer.retrieve import (
    Node,
    StudyQuery,
    find_studies,
    get_study,
    move_study,
    qido_studies,
    wado_study,
)
from dicom_gateway.uids import derived_uid, is_valid_uid
from worker.ingest.assembler import reprocess
from worker.research.batch_intake import DicomIntake
from worker.research.batch_items import SKIP, BatchError, ListedStudy, item_files
from worker.runtime import Runtime
from worker.store import jobs
from worker.store.db import BatchItem, Job, JobEvent, Study, now
from worker.store.jobs import BATCH_PRIORITY

PublishInfer = Callable[[int, int], None]  # (job id, job version): wake a GPU worker


class Source(Protocol):
    """A batch's source of studies."""

    def studies(self) -> Iterator[ListedStudy]:
        """Every study of the source, listed without fetching any."""
        ...

    def fetch(self, item: BatchItem) -> str | None:
        """Bring one listed study into the gateway; why it could not be (prefixed
        ``skip:`` when the study is skipped rather than failed), or None."""
        ...


@dataclass(frozen=True)
class RunRef:
    """What a source needs to know of its run: the runtime and the run's row."""

    rt: Runtime
    run_id: int
    run_name: str


def kind_of(source: str, csv_path: Path | None) -> str:
    """The kind of source a command-line source names (stored as ``batch_runs.kind``)."""
    if source.startswith(("http://", "https://")):
        return "dicomweb"
    if source == "pacs" or "@" in source and not Path(source).exists():
        return "pacs"
    path = Path(source)
    if csv_path is not None or path.suffix.lower() == ".csv":
        return "images"
    if path.is_dir():
        return "folder"
    raise BatchError(f"{source}: not a folder, a CSV, 'pacs' (CXR_SOURCE_PACS) or AE@host:port, "
                     "or an http(s) DICOMweb root")


class DicomSource:
    """A source of DICOM studies: those already in the gateway are reused, the others
    retrieved by the subclass (``retrieve``)."""

    def __init__(self, run: RunRef) -> None:
        self.run = run
        self.intake = DicomIntake(run.rt, run.run_name)

    def fetch(self, item: BatchItem) -> str | None:
        """A study the gateway holds is reused (or made again for these settings), the
        others retrieved."""
        db = self.run.rt.db
        with db.session() as s:
            known = s.scalar(select(Study).where(
                Study.study_instance_uid == item.study_instance_uid))
        if known is not None and known.assembled_at is not None:
            # already here (an earlier run, or live traffic): reuse it or make a new version
            job_id = reprocess(db, item.study_instance_uid, self.run.run_id,
                               f"batch {self.run.run_name}: other model settings")
            if job_id is not None:
                self._publish_prepare(job_id)
            return None
        return self.retrieve(item)

    def retrieve(self, item: BatchItem) -> str | None:
        """Bring a study the gateway does not hold; why not, or None."""
        raise NotImplementedError

    def _publish_prepare(self, job_id: int) -> None:
        from worker.pipeline import tasks  # the Celery app: only once a job must be queued

        with self.run.rt.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
        tasks.enqueue_prepare(job.id, job.version)


def _dicom_keys(path: Path) -> tuple[str, str] | None:
    """(StudyInstanceUID, SOPInstanceUID) of a DICOM file, or None for anything else."""
    try:
        ds = dcmread(path, stop_before_pixels=True,
                     specific_tags=["StudyInstanceUID", "SOPInstanceUID"])
    except Exception:  # noqa: BLE001 - not DICOM: counted, not fatal
        return None
    study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
    return (study, sop) if is_valid_uid(study) and is_valid_uid(sop) else None


class FolderSource(DicomSource):
    """A folder tree of DICOM files; anything that is not DICOM is counted and passed by."""

    def __init__(self, run: RunRef, root: Path) -> None:
        super().__init__(run)
        self.root = root
        self.unreadable = 0  # files in the tree that are not DICOM

    def studies(self) -> Iterator[ListedStudy]:
        """One row per DICOM file, keyed by its study (a study's files gather there)."""
        for folder, _dirs, names in os.walk(self.root):
            for name in sorted(names):
                path = Path(folder) / name
                keys = _dicom_keys(path)
                if keys is None:
                    self.unreadable += 1
                    continue
                yield ListedStudy(keys[0], keys[0], "", [str(path)])

    def retrieve(self, item: BatchItem) -> str | None:
        files = item_files(self.run.rt.db, item.id)
        problems = [p for p in (self.intake.take(Path(f)) for f in files) if p]
        if len(problems) == len(files):
            return f"no instance could be taken: {problems[0]}"
        return None


class DicomwebSource(DicomSource):
    """A DICOMweb server: studies by QIDO-RS, instances by WADO-RS."""

    def __init__(self, run: RunRef, root_url: str, query: StudyQuery) -> None:
        super().__init__(run)
        self.root_url, self.query = root_url, query

    def studies(self) -> Iterator[ListedStudy]:
        for uid in qido_studies(self.root_url, self.query):
            yield ListedStudy(uid, uid, "", [])

    def retrieve(self, item: BatchItem) -> str | None:
        problems = [p for p in (self.intake.take(part) for part in
                                wado_study(self.root_url, item.study_instance_uid)) if p]
        return f"an instance was refused: {problems[0]}" if problems else None


class PacsSource(DicomSource):
    """A PACS: studies by C-FIND, instances by C-MOVE to the gateway's own listener (the
    recorded default) or by C-GET into this process."""

    def __init__(self, run: RunRef, source: str, query: StudyQuery, retrieve: str) -> None:
        super().__init__(run)
        self.source, self.query, self.mode = source, query, retrieve

    def node(self) -> Node:
        """The PACS: the source itself (AE@host:port), or CXR_SOURCE_PACS for ``pacs``."""
        text = self.source if self.source != "pacs" else self.run.rt.settings.source_pacs
        if not text:
            raise BatchError("no PACS to query: set CXR_SOURCE_PACS=AE@host:port (or give "
                             "AE@host:port as the source)")
        return Node.parse(text)

    def studies(self) -> Iterator[ListedStudy]:
        for uid in find_studies(self.node(), self.run.rt.settings.ae_title, self.query):
            yield ListedStudy(uid, uid, "", [])

    def retrieve(self, item: BatchItem) -> str | None:
        node, own_ae = self.node(), self.run.rt.settings.ae_title
        if self.mode == "get":
            get_study(node, own_ae, item.study_instance_uid, self._store)
        else:
            move_study(node, own_ae, own_ae, item.study_instance_uid)
        return None

    def _store(self, ds: Dataset) -> int:
        """A C-GET's C-STORE sub-operation: 0x0000 once taken in, 0xA900 if refused."""
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return 0x0000 if self.intake.take(buf.getvalue()) is None else 0xA900


def _image_rows(csv_path: Path) -> Iterator[tuple[str, Path, str]]:
    """(study id, image path, view) from a CSV: study_id/study and path/file/Path columns;
    without a study column the study is the image's folder (CheXpert's layout)."""
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = {f.lower(): f for f in reader.fieldnames or []}
        path_col = fields.get("path") or fields.get("file") or fields.get("image")
        if path_col is None:
            raise BatchError(f"{csv_path}: needs a path (or file) column")
        study_col = fields.get("study_id") or fields.get("study")
        view_col = fields.get("frontal/lateral") or fields.get("view") or fields.get(
            "viewposition")
        for row in reader:
            rel = row[path_col].strip()
            study = row[study_col].strip() if study_col else str(Path(rel).parent)
            path = Path(rel) if Path(rel).is_absolute() else csv_path.parent / rel
            yield study, path, (row.get(view_col, "") if view_col else "").strip()


class ImageTableSource:
    """A CSV of PNG/JPEG images (CheXpert's layout works as it is): the frontal image of
    each study goes to the model as it is, without DICOM admission or conversion."""

    def __init__(self, run: RunRef, csv_path: Path, publish_infer: PublishInfer) -> None:
        self.run, self.csv_path, self.publish_infer = run, csv_path, publish_infer

    def studies(self) -> Iterator[ListedStudy]:
        """One row per CSV row; only a frontal row gives its study an image to read."""
        for study, path, view in _image_rows(self.csv_path):
            frontal = view.upper() in ("", "FRONTAL", "PA", "AP")
            uid = derived_uid(self.run.rt.installation_seed, "batch-image", self.run.run_name,
                              study)
            # a lateral row is remembered (the study may have no frontal one)
            yield ListedStudy(study, uid, "" if frontal else f"lateral:{path}",
                              [str(path)] if frontal else [])

    def fetch(self, item: BatchItem) -> str | None:
        """The study's frontal image, as a PNG, becomes a prepared job; then inference."""
        from PIL import Image

        from dicom_gateway.imaging.conversion import to_png

        files = item_files(self.run.rt.db, item.id)
        if not files:
            return f"{SKIP}lateral view only (the CSV lists no frontal image)"
        try:
            with Image.open(files[0]) as im:
                png, _w, _h = to_png(np.asarray(im.convert("L")))
        except (OSError, ValueError) as exc:
            return f"cannot read {files[0]}: {exc}"
        self.publish_infer(*self._make_job(item, png, Path(files[0]).name))
        return None

    def _make_job(self, item: BatchItem, png: bytes, image_name: str) -> tuple[int, int]:
        """A job already prepared (its model input is the image), as (id, version)."""
        t = now()
        with self.run.rt.db.session() as s:
            existing = s.scalar(select(Job).where(
                Job.study_instance_uid == item.study_instance_uid).order_by(Job.version.desc()))
            version = 1 if existing is None else existing.version + 1
            job = Job(study_instance_uid=item.study_instance_uid, version=version,
                      sop_instance_uid="", state=jobs.PREPARED, created_at=t, updated_at=t,
                      source_header="", conversion=f"image-as-is; {image_name}",
                      model_input=png, priority=BATCH_PRIORITY, batch_run_id=self.run.run_id,
                      origin="image", enqueued_at=t)
            s.add(job)
            s.flush()
            for state, detail in ((jobs.RECEIVED, f"batch {self.run.run_name}"),
                                  (jobs.PREPARED, "image input used as it is")):
                s.add(JobEvent(job_id=job.id, state=state, at=t, detail=detail))
            s.execute(update(BatchItem).where(BatchItem.id == item.id).values(job_id=job.id))
            s.commit()
            return job.id, job.version


def make_source(kind: str, run: RunRef, source: str, csv_path: Path | None,
                query: StudyQuery, retrieve: str, publish_infer: PublishInfer) -> Source:
    """The source class for a run's stored kind, chosen once."""
    if kind == "folder":
        return FolderSource(run, Path(source))
    if kind == "images":
        return ImageTableSource(run, csv_path or Path(source), publish_infer)
    if kind == "pacs":
        return PacsSource(run, source, query, retrieve)
    if kind == "dicomweb":
        return DicomwebSource(run, source, query)
    raise BatchError(f"batch kind {kind!r} is not folder, images, pacs or dicomweb")

"""``cxr-gateway batch``: retrospective studies through the same pipeline as live traffic.

A batch is a named run in the database.  It first lists its source into ``batch_items``
(one per study; a folder's files into ``batch_files``), committing as it goes, then feeds
the studies to the running gateway a bounded number at a time (``--chunk``): each is
fetched into the spool and the database as the listener would record it (or, from a
PACS, C-MOVEd to the gateway's own listener), admitted, converted, queued at batch
priority (live studies keep going first) and inferred by the same workers.  PNG/JPEG
studies (a folder with a CSV) skip DICOM admission and conversion and go straight to the
model.  Results are read back from the jobs, and the predictions written from the
database, so a run killed at any moment is finished by running it again: studies already
done (with the same model, prompt and conversion) are not inferred twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread
from sqlalchemy import delete, func, select, update

from dicom_gateway.integrity import pixel_data_problem
from dicom_gateway.listener import ReceivedInstance, StorageListener
from dicom_gateway.retrieve import (
    Node,
    StudyQuery,
    find_studies,
    get_study,
    move_study,
    qido_studies,
    wado_study,
)
from dicom_gateway.uids import derived_uid, is_valid_uid
from models.backend import BackendError, stored_identity
from models.labels import CHEXPERT_LABELS
from models.prompts import DEFAULT_PROMPT
from models.registry import describe
from worker.ingest.assembler import BATCH_PRIORITY, reprocess
from worker.ingest.sink import InstanceRecorder
from worker.runtime import Runtime
from worker.store import jobs
from worker.store.db import BatchFile, BatchItem, BatchRun, Job, JobEvent, Study, WorkerProcess, now

log = logging.getLogger(__name__)

KINDS = ("folder", "images", "pacs", "dicomweb")
PENDING, FETCHED, DONE, SKIPPED, FAILED = "pending", "fetched", "done", "skipped", "failed"
FINISHED = (DONE, SKIPPED, FAILED)
CALLING_AE = "CXRBATCH"


class BatchError(RuntimeError):
    """A batch cannot start or go on; the message says what to change."""


@dataclass
class BatchOptions:
    name: str
    source: str
    kind: str
    csv: Path | None = None
    query: StudyQuery = field(default_factory=StudyQuery)
    retrieve: str = "move"  # move | get
    send_srs: bool = False
    chunk: int = 100
    out_dir: Path | None = None


def model_key(rt: Runtime) -> str:
    """Which model this run's results come from, known here without loading it (the
    gateway node may have no torch) and built as the worker's stored results are."""
    try:
        return describe(rt.settings.backend_config()).key
    except BackendError as exc:
        raise BatchError(f"cannot tell which model revision the model server serves ({exc}); "
                         "declare it with CXR_MODEL_REVISION") from exc


def kind_of(source: str, csv_path: Path | None) -> str:
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


# -- scanning the source into the database -------------------------------------------------

def _dicom_keys(path: Path) -> tuple[str, str] | None:
    """(StudyInstanceUID, SOPInstanceUID) of a DICOM file, or None for anything else."""
    try:
        ds = dcmread(path, stop_before_pixels=True,
                     specific_tags=["StudyInstanceUID", "SOPInstanceUID"])
    except Exception:  # noqa: BLE001 - not DICOM: counted, not fatal
        return None
    study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
    return (study, sop) if is_valid_uid(study) and is_valid_uid(sop) else None


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


class Batch:
    """One run, driven to completion (or as far as it gets before it is stopped)."""

    def __init__(self, rt: Runtime, options: BatchOptions,
                 publish_infer: Callable[[int, int], None]) -> None:
        self.rt, self.options, self.publish_infer = rt, options, publish_infer
        self.db = rt.db
        self.recorder = InstanceRecorder(rt.db)
        self.key = model_key(rt)
        self.run = self._run_row()
        self.out_dir = options.out_dir or rt.settings.data_dir / "batches" / options.name
        self.unreadable = 0

    def _run_row(self) -> BatchRun:
        o = self.options
        with self.db.session() as s:
            run = s.scalar(select(BatchRun).where(BatchRun.name == o.name))
            if run is None:
                run = BatchRun(name=o.name, source=o.source, kind=o.kind,
                               options=json.dumps({"csv": str(o.csv or ""),
                                                   "query": o.query.__dict__,
                                                   "retrieve": o.retrieve}),
                               model_key=self.key, prompt=DEFAULT_PROMPT,
                               conversion=self.rt.settings.conversion, send_srs=o.send_srs,
                               created_at=now())
                s.add(run)
                s.commit()
            elif run.source != o.source:
                raise BatchError(f"batch {o.name!r} reads {run.source}, not {o.source}: "
                                 "choose another name for another source")
            return run

    def scan(self) -> int:
        """List the source into the database (once; an interrupted listing restarts)."""
        if self.run.scanned_at is not None:
            return self._count()
        with self.db.session() as s:  # a listing cut short: no study was fetched yet
            ids = select(BatchItem.id).where(BatchItem.run_id == self.run.id)
            s.execute(delete(BatchFile).where(BatchFile.item_id.in_(ids)))
            s.execute(delete(BatchItem).where(BatchItem.run_id == self.run.id))
            s.commit()
        kind = self.options.kind
        if kind == "folder":
            self._scan_folder(Path(self.options.source))
        elif kind == "images":
            self._scan_images(self.options.csv or Path(self.options.source))
        else:
            uids = (find_studies(self._pacs(), self.rt.settings.ae_title, self.options.query)
                    if kind == "pacs" else
                    qido_studies(self.options.source, self.options.query))
            self._insert((uid, uid, "", []) for uid in uids)
        with self.db.session() as s:
            s.execute(update(BatchRun).where(BatchRun.id == self.run.id)
                      .values(scanned_at=now()))
            s.commit()
        self.run.scanned_at = now()
        return self._count()

    def _pacs(self) -> Node:
        text = self.options.source if self.options.source != "pacs" else \
            self.rt.settings.source_pacs
        if not text:
            raise BatchError("no PACS to query: set CXR_SOURCE_PACS=AE@host:port (or give "
                             "AE@host:port as the source)")
        return Node.parse(text)

    def _insert(self, rows: Iterator[tuple[str, str, str, list[str]]], every: int = 500
                ) -> None:
        """(study key, study UID, source ref, file paths) rows, committed in chunks."""
        pending: list[tuple[str, str, str, list[str]]] = []

        def flush() -> None:
            with self.db.session() as s:
                for key, uid, ref, files in pending:
                    item = s.scalar(select(BatchItem).where(
                        BatchItem.run_id == self.run.id, BatchItem.study_key == key))
                    if item is None:
                        item = BatchItem(run_id=self.run.id, study_key=key,
                                         study_instance_uid=uid, source_ref=ref,
                                         state=PENDING, reason="")
                        s.add(item)
                        s.flush()
                    s.add_all(BatchFile(item_id=item.id, path=f) for f in files)
                s.commit()
            pending.clear()

        for row in rows:
            pending.append(row)
            if len(pending) >= every:
                flush()
        flush()

    def _scan_folder(self, root: Path) -> None:
        def rows() -> Iterator[tuple[str, str, str, list[str]]]:
            for folder, _dirs, names in os.walk(root):
                for name in sorted(names):
                    path = Path(folder) / name
                    keys = _dicom_keys(path)
                    if keys is None:
                        self.unreadable += 1
                        continue
                    yield keys[0], keys[0], "", [str(path)]

        self._insert(rows())

    def _scan_images(self, csv_path: Path) -> None:
        def rows() -> Iterator[tuple[str, str, str, list[str]]]:
            for study, path, view in _image_rows(csv_path):
                frontal = view.upper() in ("", "FRONTAL", "PA", "AP")
                uid = derived_uid(self.rt.installation_seed, "batch-image", self.run.name,
                                  study)
                # a lateral row is remembered (the study may have no frontal one)
                yield study, uid, "" if frontal else f"lateral:{path}", \
                    [str(path)] if frontal else []

        self._insert(rows())

    def _count(self, state: str | None = None) -> int:
        with self.db.session() as s:
            query = select(func.count()).select_from(BatchItem).where(
                BatchItem.run_id == self.run.id)
            if state:
                query = query.where(BatchItem.state == state)
            return int(s.scalar(query) or 0)

    # -- fetching and following -----------------------------------------------------------

    def _mark(self, item_id: int, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(BatchItem).where(BatchItem.id == item_id).values(**values))
            s.commit()

    def _ingest(self, data: bytes | Path) -> str | None:
        """Spool and record one DICOM instance as the listener would; why not, or None."""
        spool = self.rt.spool
        tmp: Path | None = None
        if isinstance(data, Path):
            path = data
        else:  # retrieved bytes: through a temporary file in the spool's own .tmp
            tmp = path = spool.tmp / f"batch-{os.getpid()}-{time.monotonic_ns()}.dcm"
            tmp.write_bytes(data)
        try:
            ds = dcmread(path, defer_size=1024)
            problem = StorageListener.mismatch(ds, str(ds.get("SOPInstanceUID", "")),
                                               str(ds.get("SOPClassUID", "")))
            broken = problem or (pixel_data_problem(ds, path) or None)
            if broken:
                return str(getattr(broken, "reason", broken))
            with path.open("rb") as fh:
                spooled = spool.write(ds.StudyInstanceUID, ds.SOPInstanceUID,
                                      iter(lambda: fh.read(1 << 20), b""))
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")
            self.recorder(ReceivedInstance(
                sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
                study_instance_uid=str(ds.StudyInstanceUID),
                series_instance_uid=str(ds.SeriesInstanceUID),
                modality=str(ds.get("Modality", "")), transfer_syntax_uid=str(ts),
                path=spooled.path, size=spooled.size, sha256=spooled.sha256,
                calling_ae=CALLING_AE, peer=f"batch:{self.run.name}"[:64]))
            return None
        except Exception as exc:  # noqa: BLE001 - one bad file does not stop a run
            return f"cannot read {type(exc).__name__}"
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _existing_result(self, item: BatchItem) -> Job | None:
        """A finished job for this study already made with this run's model settings."""
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.study_instance_uid == item.study_instance_uid)
                           .order_by(Job.version.desc()))
        if job is None or job.state not in (jobs.DONE, jobs.FAILED):
            return None
        if not job.result:  # failed before the model (conversion): no setting changes that
            return job if job.state == jobs.FAILED else None
        result = json.loads(job.result)
        same = stored_identity(result).key == self.key and \
            result.get("prompt") == self.run.prompt and \
            job.conversion.startswith(self.run.conversion)
        return job if same else None

    def fetch(self, item: BatchItem) -> None:
        """Bring one study into the gateway (or reuse what it already has)."""
        done = self._existing_result(item) if item.study_instance_uid else None
        if done is not None:
            self._finish(item.id, done)
            return
        self._mark(item.id, state=FETCHED, fetched_at=now())
        try:
            reason = self._fetch(item)
        except Exception as exc:  # noqa: BLE001 - recorded on the study, the run goes on
            reason = f"fetch failed: {exc}"
        if reason:
            self._mark(item.id, state=FAILED if not reason.startswith("skip:") else SKIPPED,
                       reason=reason.removeprefix("skip:"), finished_at=now())

    def _fetch(self, item: BatchItem) -> str | None:
        kind = self.options.kind
        if kind == "images":
            return self._image_job(item)
        with self.db.session() as s:
            known = s.scalar(select(Study).where(
                Study.study_instance_uid == item.study_instance_uid))
        if known is not None and known.assembled_at is not None:
            # already here (an earlier run, or live traffic): reuse it or make a new version
            job_id = reprocess(self.db, item.study_instance_uid, self.run.id,
                               f"batch {self.run.name}: other model settings")
            if job_id is not None:
                self._publish_prepare(job_id)
            return None
        if kind == "folder":
            with self.db.session() as s:
                files = list(s.scalars(select(BatchFile.path).where(
                    BatchFile.item_id == item.id)))
            problems = [p for p in (self._ingest(Path(f)) for f in files) if p]
            if len(problems) == len(files):
                return f"no instance could be taken: {problems[0]}"
            return None
        if kind == "dicomweb":
            problems = [p for p in (self._ingest(part) for part in
                                    wado_study(self.options.source, item.study_instance_uid))
                        if p]
            return f"an instance was refused: {problems[0]}" if problems else None
        node = self._pacs()
        if self.options.retrieve == "get":
            def store(ds: Dataset) -> int:
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                return 0x0000 if self._ingest(buf.getvalue()) is None else 0xA900

            get_study(node, self.rt.settings.ae_title, item.study_instance_uid, store)
        else:
            move_study(node, self.rt.settings.ae_title, self.rt.settings.ae_title,
                       item.study_instance_uid)
        return None

    def _publish_prepare(self, job_id: int) -> None:
        from worker.pipeline import tasks

        with self.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
        tasks.enqueue_prepare(job.id, job.version)

    def _image_job(self, item: BatchItem) -> str | None:
        """A PNG/JPEG study: its frontal image as the model's input, then inference."""
        from PIL import Image

        from dicom_gateway.conversion import to_png

        with self.db.session() as s:
            files = list(s.scalars(select(BatchFile.path).where(BatchFile.item_id == item.id)))
        if not files:
            return "skip:lateral view only (the CSV lists no frontal image)"
        try:
            with Image.open(files[0]) as im:
                png, _w, _h = to_png(np.asarray(im.convert("L")))
        except (OSError, ValueError) as exc:
            return f"cannot read {files[0]}: {exc}"
        t = now()
        with self.db.session() as s:
            existing = s.scalar(select(Job).where(
                Job.study_instance_uid == item.study_instance_uid).order_by(Job.version.desc()))
            version = 1 if existing is None else existing.version + 1
            job = Job(study_instance_uid=item.study_instance_uid, version=version,
                      sop_instance_uid="", state=jobs.PREPARED, created_at=t, updated_at=t,
                      source_header="", conversion=f"image-as-is; {Path(files[0]).name}",
                      model_input=png, priority=BATCH_PRIORITY, batch_run_id=self.run.id,
                      origin="image", enqueued_at=t)
            s.add(job)
            s.flush()
            for state, detail in ((jobs.RECEIVED, f"batch {self.run.name}"),
                                  (jobs.PREPARED, "image input used as it is")):
                s.add(JobEvent(job_id=job.id, state=state, at=t, detail=detail))
            s.execute(update(BatchItem).where(BatchItem.id == item.id).values(job_id=job.id))
            s.commit()
            job_id, job_version = job.id, job.version
        self.publish_infer(job_id, job_version)
        return None

    def _finish(self, item_id: int, job: Job) -> None:
        state = DONE if job.state == jobs.DONE else FAILED
        self._mark(item_id, state=state, job_id=job.id, reason=job.reason,
                   finished_at=now())

    def follow(self) -> int:
        """Settle fetched studies whose outcome is known; how many settled."""
        settled = 0
        with self.db.session() as s:
            fetched = list(s.scalars(select(BatchItem).where(
                BatchItem.run_id == self.run.id, BatchItem.state == FETCHED)))
        for item in fetched:
            with self.db.session() as s:
                job = s.get(Job, item.job_id) if item.job_id else s.scalar(
                    select(Job).where(Job.study_instance_uid == item.study_instance_uid,
                                      Job.created_at >= (item.fetched_at or 0) - 1)
                    .order_by(Job.version.desc()))
                study = s.scalar(select(Study).where(
                    Study.study_instance_uid == item.study_instance_uid))
            if job is not None and job.state in jobs.TERMINAL:
                if job.state == jobs.SUPERSEDED:
                    continue
                self._finish(item.id, job)
                settled += 1
            elif study is None and (item.fetched_at or 0) < now() - (
                    self.rt.settings.study_quiet_seconds + 60):
                # fetched by a run that was killed mid-fetch, and nothing arrived: again
                self._mark(item.id, state=PENDING, fetched_at=None)
            elif job is None and study is not None and study.assembled_at is not None:
                if self._job_in_flight(item.study_instance_uid):
                    continue  # an earlier run's (or live traffic's) job: wait for its result
                latest = self._existing_result(item)
                if latest is not None:
                    self._finish(item.id, latest)
                else:
                    self._mark(item.id, state=SKIPPED, reason=study.outcome,
                               finished_at=now())
                settled += 1
        return settled

    def _job_in_flight(self, study_uid: str) -> bool:
        """Whether the study has an unfinished job (one this run did not create: a rerun
        after a kill finds the first run's jobs still working)."""
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(
                Job.study_instance_uid == study_uid,
                Job.state.not_in(tuple(jobs.TERMINAL)))) != 0

    def gateway_alive(self) -> bool:
        with self.db.session() as s:
            return bool(s.scalar(select(func.count()).select_from(WorkerProcess).where(
                WorkerProcess.kind == "serve", WorkerProcess.stopped_at.is_(None),
                WorkerProcess.last_beat >= now() - self.rt.settings.liveness_timeout_seconds)))

    def drive(self, progress: Any = None, poll: float = 0.5) -> None:
        """Fetch and follow until every study has an outcome, ``chunk`` at a time."""
        warned = False
        while True:
            in_flight = self._count(FETCHED)
            room = max(0, self.options.chunk - in_flight)
            with self.db.session() as s:
                todo = list(s.scalars(select(BatchItem).where(
                    BatchItem.run_id == self.run.id, BatchItem.state == PENDING)
                    .order_by(BatchItem.id).limit(room))) if room else []
            for item in todo:
                self.fetch(item)
            self.follow()
            if progress is not None:
                progress(self.counts())
            if self._count(FETCHED) == 0 and self._count(PENDING) == 0:
                break
            if not warned and not self.gateway_alive():
                log.warning("no gateway (cxr-gateway serve) is running for this database: "
                            "fetched studies wait until one does")
                warned = True
            time.sleep(poll)
        with self.db.session() as s:
            s.execute(update(BatchRun).where(BatchRun.id == self.run.id)
                      .values(finished_at=now()))
            s.commit()

    def counts(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(BatchItem.state, func.count()).where(
                BatchItem.run_id == self.run.id).group_by(BatchItem.state)).all()
        return {state: int(n) for state, n in rows}

    # -- outputs ----------------------------------------------------------------------------

    def write_outputs(self) -> dict[str, Path]:
        return write_outputs(self.rt, self.run, self.out_dir)


PREDICTION_FIELDS = ["study_id", "study_instance_uid", "state", "reason", "status",
                     *CHEXPERT_LABELS, "format_ok", "truncated", "refused", "near_misses",
                     "unknown_items", "model_id", "model_revision", "backend", "prompt",
                     "conversion", "job_id", "received_to_done_s", "inference_s"]


def prediction_rows(rt: Runtime, run: BatchRun) -> Iterator[tuple[dict[str, Any],
                                                                  dict[str, Any]]]:
    """(prediction row, raw responses) per study of a run, read from the database in
    pages (a run of any size is never held whole)."""
    last = 0
    while True:
        with rt.db.session() as s:
            items = list(s.scalars(select(BatchItem).where(
                BatchItem.run_id == run.id, BatchItem.id > last).order_by(BatchItem.id)
                .limit(500)))
            jobs_by_id = {j.id: j for j in s.scalars(select(Job).where(
                Job.id.in_([i.job_id for i in items if i.job_id])))}
            events = {}
            for job_id in jobs_by_id:
                times = dict(s.execute(select(JobEvent.state, func.max(JobEvent.at)).where(
                    JobEvent.job_id == job_id).group_by(JobEvent.state)).all())
                events[job_id] = times
        if not items:
            return
        for item in items:
            last = item.id
            job = jobs_by_id.get(item.job_id or -1)
            result = json.loads(job.result) if job is not None and job.result else {}
            labels = set(result.get("labels") or [])
            t = events.get(item.job_id or -1, {})
            status = result.get("status") or ""
            row: dict[str, Any] = {
                "study_id": item.study_key, "study_instance_uid": item.study_instance_uid,
                "state": item.state, "reason": item.reason, "status": status,
                **{label: int(label in labels) for label in CHEXPERT_LABELS},
                "format_ok": result.get("format_ok"),
                "truncated": status == "truncated" if result else None,
                "refused": status == "refused" if result else None,
                "near_misses": json.dumps(result.get("near_misses") or {}),
                "unknown_items": json.dumps(result.get("unknown_labels") or []),
                "model_id": result.get("model_id"), "model_revision":
                result.get("model_revision"), "backend": result.get("backend"),
                "prompt": result.get("prompt"), "conversion": job.conversion if job else "",
                "job_id": item.job_id,
                "received_to_done_s": round(t["done"] - t["received"], 3)
                if "done" in t and "received" in t else None,
                "inference_s": round(t["reporting"] - t["inferring"], 3)
                if "reporting" in t and "inferring" in t else None,
            }
            raw = {"study_id": item.study_key, "findings_text": result.get("findings_text"),
                   "report_text": result.get("report_text")} if result else None
            yield row, raw or {}


def write_outputs(rt: Runtime, run: BatchRun, out_dir: Path) -> dict[str, Path]:
    """predictions.jsonl, predictions.csv, responses.jsonl and summary.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("predictions.jsonl", "predictions.csv",
                                                "responses.jsonl", "summary.json")}
    counts: dict[str, int] = {}
    with paths["predictions.jsonl"].open("w") as jl, \
            paths["predictions.csv"].open("w", newline="") as cf, \
            paths["responses.jsonl"].open("w") as rf:
        writer = csv.DictWriter(cf, fieldnames=PREDICTION_FIELDS)
        writer.writeheader()
        for row, raw in prediction_rows(rt, run):
            counts[row["state"]] = counts.get(row["state"], 0) + 1
            jl.write(json.dumps(row) + "\n")
            writer.writerow(row)
            if raw:
                rf.write(json.dumps(raw) + "\n")
    summary = {"name": run.name, "source": run.source, "kind": run.kind,
               "model_key": run.model_key, "prompt": run.prompt, "conversion": run.conversion,
               "counts": counts, "written_at": jobs.iso(now()),
               "sha256_predictions": hashlib.sha256(
                   paths["predictions.csv"].read_bytes()).hexdigest()}
    paths["summary.json"].write_text(json.dumps(summary, indent=2))
    return paths


def status_of(rt: Runtime, name: str) -> dict[str, Any]:
    """A run's progress, for ``batch status`` in another terminal."""
    with rt.db.session() as s:
        run = s.scalar(select(BatchRun).where(BatchRun.name == name))
        if run is None:
            raise BatchError(f"no batch named {name!r}")
        counts = dict(s.execute(select(BatchItem.state, func.count()).where(
            BatchItem.run_id == run.id).group_by(BatchItem.state)).all())
        recent = s.scalar(select(func.count()).select_from(BatchItem).where(
            BatchItem.run_id == run.id, BatchItem.finished_at >= now() - 600)) or 0
    total = sum(counts.values())
    finished = sum(counts.get(k, 0) for k in FINISHED)
    rate = recent / 600
    return {"name": name, "source": run.source, "kind": run.kind,
            "listed": run.scanned_at is not None, "total": total, "finished": finished,
            "counts": {str(k): int(v) for k, v in counts.items()},
            "rate_per_s": round(rate, 3),
            "eta_s": round((total - finished) / rate) if rate > 0 else None,
            "finished_at": jobs.iso(run.finished_at), "model_key": run.model_key}

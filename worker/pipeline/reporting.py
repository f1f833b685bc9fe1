"""The report stage: the stored result as a DICOM SR in the outbox.

What the SR says is ``dicom_gateway.documents.sr``'s; here the job's stored result (see
``worker.pipeline.inference.result_payload``) becomes its ``DraftReport``, and the
job, its version and the model that made the result become its UIDs (so a repeated
task writes the same SR).  The claims and writes are ``worker.pipeline.claims``'.

Where any of the job's destinations asks for the rendered draft (``/sr+page``,
``/page``), the same draft is also drawn as Secondary Capture pages
(``dicom_gateway.documents.page``): UIDs from the SR's, so the same rules hold (a repeated
task rewrites the same files; a new job version writes new pages that say which version
they supersede).  Their outbox paths are kept on the job for the delivery stage.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from sqlalchemy import select, update

from dicom_gateway.documents.page import build_pages
from dicom_gateway.documents.pdf import build_pdf
from dicom_gateway.documents.sr import Algorithm, DraftReport, SRBuildError, SRIdentity, build_sr
from dicom_gateway.transfer.destinations import Destination, parse_destinations
from models.backend import stored_identity
from worker import __version__, logs
from worker.pipeline import claims
from worker.runtime import Runtime
from worker.store.db import Job

MANUFACTURER = "CXR Reason Gateway"


def report(rt: Runtime, job_id: int, version: int) -> bool:
    """Build the SR into the outbox; False when there is nothing to do here."""
    job = claims.claim_for_report(rt, job_id, version)
    if job is None:
        return False
    if job.origin == "image":
        return claims.finish_without_sr(rt, job)
    assert job.result is not None
    source = Dataset.from_json(job.source_header, bulk_data_uri_handler=lambda *_a: b"")
    result = json.loads(job.result)
    draft = draft_from_result(result, job.conversion)
    identity = sr_identity(rt, job, result)
    previous = previous_srs(rt, job)
    try:
        sr = build_sr(source, draft, identity, previous_versions=previous)
        pages = rendered(rt, job, source, draft, identity,
                         int(previous[-1].InstanceNumber) if previous else None)
    except SRBuildError as exc:  # the header's own values may be in it: never show them
        claims.fail(rt, job_id, version, logs.redact(str(exc), logs.patient_values(source)))
        return False
    page_paths = [_to_outbox(rt, job, page) for page in pages]
    if not _record_pages(rt, job, page_paths):
        return False  # taken over meanwhile: the new holder writes the same files
    spooled = _to_outbox(rt, job, sr)
    return claims.record_sr(rt, job, identity.sop_instance_uid, spooled)


def _to_outbox(rt: Runtime, job: Job, ds: Dataset) -> Path:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return rt.outbox.write(job.study_instance_uid, str(ds.SOPInstanceUID),
                           [buf.getvalue()]).path


def job_destinations(rt: Runtime, job: Job) -> tuple[Destination, ...]:
    """The destinations this job's SR goes to: the list its routing rule recorded on the
    job, else the default list."""
    return parse_destinations(job.destinations) if job.destinations else \
        rt.settings.destinations


def rendered(rt: Runtime, job: Job, source: Dataset, draft: DraftReport,
             identity: SRIdentity, supersedes: int | None) -> list[Dataset]:
    """The rendered draft as the job's destinations ask for it: the Secondary Capture
    pages, the Encapsulated PDF of the same pages, both, or nothing."""
    dests = job_destinations(rt, job)
    want_pages, want_pdf = any(d.wants_page for d in dests), any(d.wants_pdf for d in dests)
    if not (want_pages or want_pdf):
        return []
    pages = build_pages(source, draft, identity, job.model_input, supersedes=supersedes)
    return [*(pages if want_pages else []),
            *([build_pdf(source, draft, identity, pages, job.model_input, supersedes)]
              if want_pdf else [])]


def _record_pages(rt: Runtime, job: Job, paths: list[Path]) -> bool:
    """Keep the pages' outbox paths with the job (while this process still holds it)."""
    with rt.db.session() as s:
        res = s.execute(update(Job).where(Job.id == job.id, Job.version == job.version,
                                          Job.holder == rt.worker_name)
                        .values(page_paths="\n".join(str(p) for p in paths)))
        s.commit()
        return bool(res.rowcount)  # type: ignore[attr-defined]


def sr_identity(rt: Runtime, job: Job, result: dict[str, Any]) -> SRIdentity:
    """The SR's UIDs: from the installation, the study, the job and version, and the model
    that made the result (``models.backend``'s key: the mock and the real model, or two
    revisions, never share one)."""
    return SRIdentity.derive(
        rt.installation_seed, job.study_instance_uid, f"job-{job.id}", job.version,
        stored_identity(result).key, MANUFACTURER, f"cxr-reason-gateway {__version__}",
        rt.settings.site_name)


def previous_srs(rt: Runtime, job: Job) -> list[Dataset]:
    """Earlier versions' SRs for this study, so the new one names what it supersedes."""
    with rt.db.session() as s:
        paths = s.scalars(select(Job.sr_path).where(
            Job.study_instance_uid == job.study_instance_uid, Job.version < job.version,
            Job.sr_path != "").order_by(Job.version)).all()
    return [dcmread(p, stop_before_pixels=True) for p in paths if Path(p).is_file()]


def _notes(result: dict[str, Any]) -> list[str]:
    """What a reader of the SR should know about the answer's items that did not count.

    A refusal's words are the refusal (the status says so once), never answer items: a
    result stored before the parser knew that still lists them, so they are left out here.
    """
    notes = [str(n) for n in result.get("notes") or []]
    if result.get("status") == "refused":
        return notes
    near = result.get("near_misses") or {}
    if near:
        notes.append("Answer items close to a CheXpert label but not one, so not counted "
                     "(as the training parser would not): "
                     + "; ".join(f"{raw!r} (like {label})" for raw, label in
                                 near.items()))
    unknown = result.get("unknown_labels") or []
    if unknown:
        notes.append("Answer items outside the 14 CheXpert labels, not counted: "
                     + "; ".join(repr(u) for u in unknown))
    return notes


def draft_from_result(result: dict[str, Any], conversion: str) -> DraftReport:
    """The SR's content from a stored result (also used by ``bench`` and the tests)."""
    status = str(result["status"])
    labels = tuple(str(x) for x in result.get("labels") or [])
    is_mock = bool(result.get("is_mock"))
    sections = tuple(
        (str(sec["heading"]), tuple(str(i) for i in sec["items"]))
        for sec in result.get("report_sections") or []
    )
    revision = result.get("model_revision") or "unrecorded revision"
    return DraftReport(
        status=status,
        labels=labels,
        reasoning=str(result.get("reasoning") or ""),
        algorithm=Algorithm(
            name=("MOCK " if is_mock else "") + "NV-Reason-CXR-3B",
            version=f"hf:{result['model_id']}@{revision}",
            manufacturer="NVIDIA",
            parameters=(f"backend={result['backend']}", f"prompt={result['prompt']}",
                        f"conversion={conversion}"),
        ),
        is_mock=is_mock,
        answer_text=str(result.get("answer") or "") if result.get("answer") is not None
        else str(result.get("findings_text") or ""),
        report_sections=sections,
        report_text=str(result.get("report_text") or ""),
        report_reasoning=str(result.get("report_reasoning") or ""),
        report_truncated=bool(result.get("report_truncated")),
        notes=tuple(_notes(result)),
    )

"""What a batch run gives back: its predictions and summary, and its progress.

Both are read from the database, never from the process that ran the batch: the files
can be written again at any time (``batch export``), and ``batch status`` works from
another terminal while the run goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from models.labels import CHEXPERT_LABELS
from worker.research.batch_items import BatchError
from worker.runtime import Runtime
from worker.store import jobs
from worker.store.db import BatchItem, BatchRun, Job, JobEvent, now
from worker.store.progress import run_progress

PREDICTION_FIELDS = ["study_id", "study_instance_uid", "state", "reason", "status",
                     *CHEXPERT_LABELS, "format_ok", "truncated", "refused", "near_misses",
                     "unknown_items", "model_id", "model_revision", "backend", "prompt",
                     "conversion", "job_id", "received_to_done_s", "inference_s"]
PAGE = 500  # items read per query while writing predictions


def _elapsed(times: dict[str, float], start: str, end: str) -> float | None:
    """Seconds from a job's ``start`` state to its ``end`` state, if it reached both."""
    return round(times[end] - times[start], 3) if end in times and start in times else None


def _prediction_row(item: BatchItem, job: Job | None,
                    times: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prediction row, raw responses) of one study."""
    result = json.loads(job.result) if job is not None and job.result else {}
    labels = set(result.get("labels") or [])
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
        "model_id": result.get("model_id"), "model_revision": result.get("model_revision"),
        "backend": result.get("backend"), "prompt": result.get("prompt"),
        "conversion": job.conversion if job else "", "job_id": item.job_id,
        "received_to_done_s": _elapsed(times, "received", "done"),
        "inference_s": _elapsed(times, "inferring", "reporting"),
    }
    raw = {"study_id": item.study_key, "findings_text": result.get("findings_text"),
           "report_text": result.get("report_text")} if result else {}
    return row, raw


def prediction_rows(rt: Runtime, run: BatchRun) -> Iterator[tuple[dict[str, Any],
                                                                  dict[str, Any]]]:
    """(prediction row, raw responses) per study of a run, read from the database in
    pages (a run of any size is never held whole)."""
    last = 0
    while True:
        with rt.db.session() as s:
            items = list(s.scalars(select(BatchItem).where(
                BatchItem.run_id == run.id, BatchItem.id > last).order_by(BatchItem.id)
                .limit(PAGE)))
            jobs_by_id = {j.id: j for j in s.scalars(select(Job).where(
                Job.id.in_([i.job_id for i in items if i.job_id])))}
            times_by_job = {job_id: dict(s.execute(
                select(JobEvent.state, func.max(JobEvent.at)).where(
                    JobEvent.job_id == job_id).group_by(JobEvent.state)).all())
                for job_id in jobs_by_id}
        if not items:
            return
        for item in items:
            last = item.id
            yield _prediction_row(item, jobs_by_id.get(item.job_id or -1),
                                  times_by_job.get(item.job_id or -1, {}))


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


def find_run(rt: Runtime, name: str) -> BatchRun:
    """The run of that name; BatchError if there is none."""
    with rt.db.session() as s:
        run = s.scalar(select(BatchRun).where(BatchRun.name == name))
    if run is None:
        raise BatchError(f"no batch named {name!r}")
    return run


def status_of(rt: Runtime, name: str) -> dict[str, Any]:
    """A run's progress, for ``batch status`` in another terminal: the rate is over the
    run's own elapsed processing time (``worker.store.progress``, as the dashboard says)."""
    run = find_run(rt, name)
    with rt.db.session() as s:
        return run_progress(s, run)

"""A reader study's cases: which processed jobs, and whether each is normal or abnormal.

Cases come three ways (``--cases``): ``batch:NAME`` (a batch run's studies, in the batch's
order), ``rule:NAME`` (the studies a routing rule sent to the model) or a file of
StudyInstanceUIDs, one per line (``#`` starts a comment).  Each study's case is its latest
job that is done with a result; a study without one is refused by UID, since a reader
cannot read a case the model has not answered.  Results of the mock backend are wiring,
not a model: a study over them is refused unless asked for, and is then marked MOCK in
everything it shows and writes.

The reference, which splits the report times into normal and abnormal cases as the
paper's Figure 2 does, comes from a CheXpert-style labels CSV (``cxr-gateway evaluate``'s:
a ``study_id`` or ``study_instance_uid`` column and the 14 label columns; a batch's own
study ids match too) or from the reviewers' current verdicts (``reviews``).  A case is
abnormal when any label but No Finding is 1 or -1 (uncertain is not normal), normal when
none is, and unknown ("") when the labels do not name it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.labels import CHEXPERT_LABELS, NO_FINDING
from worker.store import jobs, reviews
from worker.store.db import BatchItem, BatchRun, Job
from worker.store.reader_studies import CaseIn, StudyError

NORMAL, ABNORMAL = "normal", "abnormal"
MAX_UIDS_FILE = 4 * 1024 * 1024  # bytes: a list of UIDs, not a dataset


@dataclass(frozen=True)
class Chosen:
    """The cases as found, where they came from, whether any result is the mock's, and
    each case's key in a labels file (a batch's own study id, else its UID)."""

    cases: list[CaseIn]
    source: str
    mock: bool
    keys: dict[str, str]


def _processed(session: Session, uids: Iterable[str]) -> tuple[dict[str, Job], list[str]]:
    """Each study's latest done job with a result; the UIDs that have none."""
    wanted = list(dict.fromkeys(uids))
    rows = session.scalars(select(Job).where(
        Job.study_instance_uid.in_(wanted), Job.state == jobs.DONE,
        Job.result.is_not(None)).order_by(Job.version)).all() if wanted else []
    latest = {job.study_instance_uid: job for job in rows}  # the highest version wins
    return latest, [uid for uid in wanted if uid not in latest]


def _uids_of(session: Session, spec: str) -> tuple[list[str], str, dict[str, str]]:
    if spec.startswith("batch:"):
        name = spec.removeprefix("batch:")
        run = session.scalar(select(BatchRun).where(BatchRun.name == name))
        if run is None:
            raise StudyError(f"no batch run named {name!r} (cxr-gateway batch status)")
        items = session.execute(select(BatchItem.study_instance_uid, BatchItem.study_key).where(
            BatchItem.run_id == run.id, BatchItem.study_instance_uid != "").order_by(
            BatchItem.id)).all()
        return [i[0] for i in items], f"batch {name}", {i[0]: i[1] for i in items}
    if spec.startswith("rule:"):
        name = spec.removeprefix("rule:")
        uids = session.scalars(select(Job.study_instance_uid).where(
            Job.rule == name).order_by(Job.id)).all()
        if not uids:
            raise StudyError(f"no job was made by a routing rule named {name!r}")
        return list(dict.fromkeys(uids)), f"rule {name}", {}
    path = Path(spec)
    if not path.is_file():
        raise StudyError(f"--cases {spec!r}: not batch:NAME, rule:NAME or a file of "
                         "StudyInstanceUIDs")
    if path.stat().st_size > MAX_UIDS_FILE:
        raise StudyError(f"{path}: over {MAX_UIDS_FILE} bytes; a file of UIDs is smaller")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line], f"file {path.name}", {}


def choose(session: Session, spec: str, allow_mock: bool = False) -> Chosen:
    """The cases ``spec`` names, or StudyError saying which studies cannot be cases."""
    uids, source, keys = _uids_of(session, spec)
    latest, missing = _processed(session, uids)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                          if len(missing) > 5 else "")
        raise StudyError(f"{len(missing)} of {len(set(uids))} studies have no processed job "
                         f"(done, with a model result): {shown}")
    order = list(dict.fromkeys(uids))
    mocked = [uid for uid in order if json.loads(latest[uid].result or "{}").get("is_mock")]
    if mocked and not allow_mock:
        raise StudyError(f"{len(mocked)} of {len(order)} cases have results of the mock "
                         "backend, which is for wiring only; --allow-mock makes a study "
                         "marked MOCK everywhere")
    cases = [CaseIn(latest[uid].id, uid) for uid in order]
    return Chosen(cases, source, bool(mocked), {uid: keys.get(uid, uid) for uid in order})


def reference_of(values: Mapping[str, str]) -> str:
    """normal | abnormal from one study's label cells (1, 0, -1 or blank)."""
    found = [label for label in CHEXPERT_LABELS if label != NO_FINDING
             and str(values.get(label, "") or "").strip() not in ("", "0", "0.0")]
    return ABNORMAL if found else NORMAL


def _labels_file(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        key = next((c for c in ("study_id", "study_instance_uid") if c in fields), None)
        missing = [c for c in CHEXPERT_LABELS if c not in fields]
        if key is None or missing:
            raise StudyError(f"{path}: a labels CSV needs a study_id or study_instance_uid "
                             f"column and the 14 label columns"
                             + (f" (missing {', '.join(missing)})" if missing else ""))
        out: dict[str, dict[str, str]] = {}
        for row in reader:
            out.setdefault(row[key].strip(), row)
            if "study_instance_uid" in row and key != "study_instance_uid":
                out.setdefault(row["study_instance_uid"].strip(), row)
        return out


def with_references(session: Session, chosen: Chosen, labels: str | None) -> list[CaseIn]:
    """The cases with their reference from ``labels`` (a CSV path, or "reviews")."""
    if not labels:
        return chosen.cases
    if labels == "reviews":
        table = {r["study_instance_uid"]: r for r in reviews.export_rows(session)}
        source = "reviewers' verdicts"
    else:
        table = _labels_file(Path(labels))
        source = f"labels {Path(labels).name}"
    out = []
    for case in chosen.cases:
        row = table.get(chosen.keys[case.study_instance_uid]) or table.get(
            case.study_instance_uid)
        out.append(CaseIn(case.job_id, case.study_instance_uid,
                          reference_of(row) if row else "", source if row else ""))
    return out

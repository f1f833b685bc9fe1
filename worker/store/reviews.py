"""Reviewer verdicts: per study (per job), for each of the 14 CheXpert labels, agree,
disagree or not assessable, which gives the reviewer's own label set; plus a note, who
and when.

These are the reference a research team measures the model against prospectively (the
paper's reader study did it by hand), so the rules are spelled once here, for the HTTP
API, the dashboard and ``cxr-gateway review`` alike:

- ``decide`` (pure) turns what a reviewer said into the 14 verdicts.  A reviewer names
  only what they want to change: ``add`` (present), ``remove`` (absent), ``disagree``
  (flip the model's call), ``not_assessable``, or explicit verdicts; a label not named is
  agreed with.  One label named two ways is refused, not guessed.
- A reviewer's newer verdict on the same job replaces their older one (which is kept,
  ``current`` False); two reviewers' verdicts stand side by side.
- The labels file (``export_rows``) has one row per study, from the latest current
  verdict on it (``--reviewer`` to choose whose): 1 present, 0 absent, -1 not
  assessable, which ``cxr-gateway evaluate`` ignores for that class by default
  (``--uncertain ignore``).

No patient data: a study is its UID, a reviewer is the token name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.labels import BY_LOWER, CHEXPERT_LABELS
from worker.store import jobs
from worker.store.db import BatchItem, Job, Review, ReviewLabel, now

AGREE, DISAGREE, NOT_ASSESSABLE = "agree", "disagree", "not_assessable"
VERDICTS = (AGREE, DISAGREE, NOT_ASSESSABLE)
NOT_ASSESSABLE_VALUE = "-1"  # in the labels file: CheXpert's "uncertain"
EXPORT_FIELDS = ["study_id", "study_instance_uid", "job_id", "reviewer", "reviewed_at",
                 *CHEXPERT_LABELS, "note"]


class ReviewError(ValueError):
    """A verdict cannot be recorded as given; the message says what to change."""


@dataclass(frozen=True)
class LabelVerdict:
    """One label's verdict: what the model said and what the reviewer says (None: not
    assessable)."""

    label: str
    verdict: str
    model_present: int
    reviewer_present: int | None


def label_named(text: str) -> str:
    """A CheXpert label from how a person types it (any case, ``_`` or ``-`` for spaces)."""
    key = " ".join(text.replace("_", " ").replace("-", " ").split()).lower()
    if key not in BY_LOWER:
        raise ReviewError(f"{text!r} is not one of the 14 labels: {', '.join(CHEXPERT_LABELS)}")
    return BY_LOWER[key]


def _verdict_word(text: str) -> str:
    word = text.strip().lower().replace(" ", "_").replace("-", "_")
    if word in ("not_assessable", "na", "n/a", "unassessable"):
        return NOT_ASSESSABLE
    if word not in VERDICTS:
        raise ReviewError(f"{text!r} is not a verdict: agree, disagree or not_assessable")
    return word


def decide(model_labels: Iterable[str], verdicts: Mapping[str, str] | None = None,
           add: Iterable[str] = (), remove: Iterable[str] = (),
           disagree: Iterable[str] = (), not_assessable: Iterable[str] = (),
           agree: Iterable[str] = ()) -> list[LabelVerdict]:
    """The 14 verdicts, in CheXpert order, from the model's labels and what the reviewer
    said (see the module docstring).  Pure: no database, no clock."""
    said = {label_named(x) for x in model_labels}
    wanted: dict[str, tuple[str, str]] = {}  # label -> (verdict, as named by)

    def want(names: Iterable[str], how: str, verdict_of: Any) -> None:
        for name in names:
            label = label_named(name)
            verdict = verdict_of(label)
            before = wanted.get(label)
            if before is not None and before[0] != verdict:
                raise ReviewError(f"{label} is named twice: {before[1]} and {how}")
            wanted[label] = (verdict, how)

    for name, word in (verdicts or {}).items():
        want([name], f"verdict {word}", lambda _label, w=word: _verdict_word(w))
    want(agree, "agree", lambda _label: AGREE)
    want(disagree, "disagree", lambda _label: DISAGREE)
    want(not_assessable, "not assessable", lambda _label: NOT_ASSESSABLE)
    want(add, "add", lambda label: AGREE if label in said else DISAGREE)
    want(remove, "remove", lambda label: DISAGREE if label in said else AGREE)
    out = []
    for label in CHEXPERT_LABELS:
        verdict = wanted.get(label, (AGREE, ""))[0]
        model = int(label in said)
        reviewer = None if verdict == NOT_ASSESSABLE else (
            model if verdict == AGREE else 1 - model)
        out.append(LabelVerdict(label, verdict, model, reviewer))
    return out


def model_labels(job: Job) -> list[str]:
    """What the model called on this job (a job without a result cannot be reviewed)."""
    if not job.result:
        raise ReviewError(f"job {job.id} has no model result to review yet ({job.state})")
    return list(json.loads(job.result).get("labels") or [])


def record(session: Session, job: Job, reviewer: str, decided: list[LabelVerdict],
           note: str = "") -> dict[str, Any]:
    """Store a verdict (committed); the reviewer's earlier one on this job stops counting."""
    if not reviewer:
        raise ReviewError("a verdict needs a reviewer's name")
    session.execute(update(Review).where(Review.job_id == job.id, Review.reviewer == reviewer,
                                         Review.current.is_(True)).values(current=False))
    review = Review(job_id=job.id, study_instance_uid=job.study_instance_uid,
                    reviewer=reviewer, created_at=now(), note=note.strip(), current=True)
    session.add(review)
    session.flush()
    rows = [ReviewLabel(review_id=review.id, label=v.label, verdict=v.verdict,
                        model_present=v.model_present, reviewer_present=v.reviewer_present)
            for v in decided]
    session.add_all(rows)
    session.commit()
    return as_dict(review, rows)


def as_dict(review: Review, rows: Iterable[ReviewLabel]) -> dict[str, Any]:
    """A verdict for the API and the CLI."""
    by_label = {r.label: r for r in rows}
    ordered = [by_label[c] for c in CHEXPERT_LABELS if c in by_label]
    return {
        "review_id": review.id, "job_id": review.job_id,
        "study_instance_uid": review.study_instance_uid, "reviewer": review.reviewer,
        "at": jobs.iso(review.created_at), "current": review.current, "note": review.note,
        "verdicts": {r.label: r.verdict for r in ordered},
        "labels": [r.label for r in ordered if r.reviewer_present == 1],
        "model_labels": [r.label for r in ordered if r.model_present == 1],
        "changed": [r.label for r in ordered if r.verdict == DISAGREE],
        "not_assessable": [r.label for r in ordered if r.verdict == NOT_ASSESSABLE],
    }


def _labels_of(session: Session, review_ids: list[int]) -> dict[int, list[ReviewLabel]]:
    out: dict[int, list[ReviewLabel]] = {i: [] for i in review_ids}
    for row in session.scalars(select(ReviewLabel).where(
            ReviewLabel.review_id.in_(review_ids))).all():
        out[row.review_id].append(row)
    return out


def of_job(session: Session, job_id: int) -> list[dict[str, Any]]:
    """Every verdict on a job, newest first (earlier ones of a reviewer: ``current`` False)."""
    reviews = list(session.scalars(select(Review).where(Review.job_id == job_id)
                                   .order_by(Review.id.desc())).all())
    labels = _labels_of(session, [r.id for r in reviews])
    return [as_dict(r, labels[r.id]) for r in reviews]


def _study_keys(session: Session, run_id: int) -> dict[str, str]:
    """A batch's studies: StudyInstanceUID -> the source's study id (its predictions')."""
    return {uid: key for uid, key in session.execute(
        select(BatchItem.study_instance_uid, BatchItem.study_key).where(
            BatchItem.run_id == run_id, BatchItem.study_instance_uid != "")).all()}


def _current(session: Session, run_id: int | None, reviewer: str | None) -> list[Review]:
    query = select(Review).where(Review.current.is_(True)).order_by(Review.created_at,
                                                                     Review.id)
    if reviewer:
        query = query.where(Review.reviewer == reviewer)
    reviews = list(session.scalars(query).all())
    if run_id is not None:
        keys = _study_keys(session, run_id)
        reviews = [r for r in reviews if r.study_instance_uid in keys]
    return reviews


def agreement(session: Session, run_id: int | None = None) -> dict[str, Any]:
    """Agreement with the model per label so far, over every reviewer's current verdicts:
    agree / (agree + disagree); not assessable counts apart."""
    reviews = _current(session, run_id, None)
    labels = _labels_of(session, [r.id for r in reviews])
    per: dict[str, dict[str, int]] = {c: dict.fromkeys(VERDICTS, 0) for c in CHEXPERT_LABELS}
    for rows in labels.values():
        for row in rows:
            per[row.label][row.verdict] += 1
    out = []
    for label in CHEXPERT_LABELS:
        n = per[label]
        judged = n[AGREE] + n[DISAGREE]
        out.append({"label": label, **n,
                    "agreement": round(n[AGREE] / judged, 4) if judged else None})
    judged_all = sum(x[AGREE] + x[DISAGREE] for x in per.values())
    return {"reviews": len(reviews), "studies": len({r.study_instance_uid for r in reviews}),
            "reviewers": sorted({r.reviewer for r in reviews}), "labels": out,
            "agreement": round(sum(x[AGREE] for x in per.values()) / judged_all, 4)
            if judged_all else None}


def export_rows(session: Session, run_id: int | None = None,
                reviewer: str | None = None) -> list[dict[str, Any]]:
    """The labels file: one row per reviewed study, from its latest current verdict
    (``reviewer``'s only, if given).  The study id is the batch's own (``run_id``: what
    its predictions file uses) or else the StudyInstanceUID."""
    reviews = _current(session, run_id, reviewer)
    latest: dict[str, Review] = {}
    for review in reviews:  # oldest first: the last one seen wins
        latest[review.study_instance_uid] = review
    keys = _study_keys(session, run_id) if run_id is not None else {}
    labels = _labels_of(session, [r.id for r in latest.values()])
    rows = []
    for uid, review in latest.items():
        values = {r.label: r.reviewer_present for r in labels[review.id]}
        rows.append({
            "study_id": keys.get(uid, uid), "study_instance_uid": uid,
            "job_id": review.job_id, "reviewer": review.reviewer,
            "reviewed_at": jobs.iso(review.created_at),
            **{c: NOT_ASSESSABLE_VALUE if values.get(c) is None else str(values[c])
               for c in CHEXPERT_LABELS},
            "note": review.note})
    return rows


def prediction_rows(session: Session, rows: Iterable[Mapping[str, Any]]
                    ) -> list[dict[str, Any]]:
    """The model's predictions of the reviewed jobs of ``export_rows``, in the columns
    ``evaluate`` reads from a batch's predictions file (for studies that came in live,
    which have no batch predictions)."""
    out = []
    for row in rows:
        job = session.get(Job, int(row["job_id"]))
        if job is None:
            continue
        result = json.loads(job.result) if job.result else {}
        called = set(result.get("labels") or [])
        out.append({"study_id": row["study_id"],
                    "study_instance_uid": job.study_instance_uid, "state": job.state,
                    "reason": job.reason, "status": result.get("status") or "",
                    **{c: int(c in called) for c in CHEXPERT_LABELS},
                    "model_id": result.get("model_id"),
                    "model_revision": result.get("model_revision"),
                    "backend": result.get("backend"), "job_id": job.id})
    return out


def counts(session: Session) -> dict[str, Any]:
    """For the metrics: verdicts recorded (every one) and the current label verdicts."""
    from sqlalchemy import func

    total = session.scalar(select(func.count()).select_from(Review)) or 0
    by_verdict = dict(session.execute(
        select(ReviewLabel.verdict, func.count()).join(
            Review, Review.id == ReviewLabel.review_id).where(Review.current.is_(True))
        .group_by(ReviewLabel.verdict)).all())
    return {"reviews": int(total),
            "label_verdicts": {v: int(by_verdict.get(v, 0)) for v in VERDICTS}}

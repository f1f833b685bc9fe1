"""The reader study's blinding, on every route that could show a reader the model's output.

A reader who has not yet finished a case's labels-only read may not see the model's full
output on that case, and before the no-AI read not even its labels ("at each step, only
information permitted for that condition is visible").  The reading page is given only
what its condition allows (``worker.readers.reading``); these guards make the rest of the
API agree, whatever a page or a script asks: a job's result, preview, verdicts and thread,
a question on it, and every list that carries model output (the overview, the job list, a
study's detail, the agreement table) answer 403 for that reader until the read is done,
and 200 after.  The rule is ``worker.store.reader_studies.visible``'s; a caller in no
study is never held back.
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from worker.ops.api.auth import calling
from worker.ops.api.state import State
from worker.store import reader_studies
from worker.store.db import Question


def _refuse_job(request: Request, state: State, job_id: int) -> None:
    who = calling(request, state)
    if who is None:
        return
    with state.db.session() as session:
        level = reader_studies.visible(session, who.name, job_id)
    if level < reader_studies.EVERYTHING:
        step = "no-AI" if level == reader_studies.NOTHING else "labels-only"
        raise HTTPException(403, f"{who.name} reads job {job_id} in a reader study: the "
                                 f"model's output on it stays hidden until their {step} "
                                 "read of it is done")


async def job_output(request: Request, state: State, job_id: int) -> None:
    """A route about job ``job_id``'s output."""
    _refuse_job(request, state, job_id)


async def question_output(request: Request, state: State, question_id: int) -> None:
    """A route about question ``question_id`` (it shows its job's output)."""
    with state.db.session() as session:
        question = session.get(Question, question_id)
        job_id = None if question is None else question.job_id
    if job_id is not None:
        _refuse_job(request, state, job_id)


async def listed_output(request: Request, state: State) -> None:
    """A route that lists model output over many jobs."""
    who = calling(request, state)
    if who is None:
        return
    with state.db.session() as session:
        studies = reader_studies.blinded_studies(session, who.name)
    if studies:
        raise HTTPException(403, f"{who.name} is reading in reader study "
                                 f"{', '.join(sorted(studies))}: lists of model output stay "
                                 "hidden until every case's labels-only read is done "
                                 "(the reading page is /read/NAME)")


JOB = Depends(job_output)
QUESTION = Depends(question_output)
LISTED = Depends(listed_output)

"""The reader study over HTTP: the reading page and what it reads, progress and results.

A reader logs in at ``/login`` with their named token and opens ``/read/NAME``; the page
asks ``/api/readers/NAME/current`` for the read it is at (the first one not done, so a
reader who closed the browser resumes at the same place) and posts the report, then the
questionnaire, back.  The server keeps the clock: the case's time runs from the first time
it is shown to the report's arrival; the page only adds how long it was visible
(``/active``, bounded by the time that passed).  Only a reader the study lists may read
in it, and only at their own current position; the operator sees every study's progress
and summary (``roles.STUDY_RESULTS``).  What each condition shows is
``worker.readers.reading``'s; the rest of the API is held back by ``blinding``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicom_gateway.imaging.conversion import ConversionError
from dicom_gateway.imaging.display import render_png
from worker.ops.api.auth import calling, refuse, require_login, require_token
from worker.ops.api.state import State, found
from worker.readers import reading, summary
from worker.store import reader_studies as studies
from worker.store import roles
from worker.store.reader_studies import ReaderCase, ReaderRead, ReaderStudy

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(dependencies=[Depends(require_token)], tags=["readers"])
page_router = APIRouter(include_in_schema=False)


class ReportIn(BaseModel):
    position: int = Field(ge=1)
    report: str = Field(max_length=studies.MAX_REPORT)
    active_seconds: float = Field(0.0, ge=0, le=86_400)


class AnswersIn(BaseModel):
    position: int = Field(ge=1)
    answers: dict[str, int] = Field(max_length=32)
    comment: str = Field("", max_length=studies.MAX_COMMENT)


class ActiveIn(BaseModel):
    position: int = Field(ge=1)
    seconds: float = Field(ge=0, le=86_400)


def _study(state: State, name: str) -> ReaderStudy:
    with state.db.session() as session:
        study: ReaderStudy = found(studies.named(session, name), f"reader study {name!r}")
    return study


def _reader(request: Request, state: State, study: ReaderStudy) -> str:
    """The caller's name if the study lists them as a reader, else 403."""
    who = calling(request, state)
    name = "" if who is None else who.name
    if name not in studies.readers_of(study):
        raise HTTPException(403, f"{name or 'this caller'} is not a reader of study "
                                 f"{study.name!r}")
    return name


def _may_see_results(request: Request, state: State) -> bool:
    who = calling(request, state)
    return who is not None and who.may(roles.STUDY_RESULTS)


def _listing(state: State, study: ReaderStudy, reader: str | None) -> dict[str, Any]:
    with state.db.session() as session:
        cases = session.scalar(select(func.count()).select_from(ReaderCase).where(
            ReaderCase.study_id == study.id)) or 0
        rows = studies.progress(session, study)
    return {"name": study.name, "mock": study.mock, "cases": int(cases),
            "readers": studies.readers_of(study), "source": study.source,
            "created_at": study.created_at,
            "progress": [r for r in rows if reader is None or r["reader"] == reader]}


@router.get("/api/readers")
def list_studies(request: Request, state: State) -> list[dict[str, Any]]:
    """The reader studies the caller may see: every one for the operator (with everyone's
    progress), those listing the caller for a reader (with their own)."""
    who = calling(request, state)
    every = _may_see_results(request, state)
    with state.db.session() as session:
        rows = studies.all_studies(session)
    name = "" if who is None else who.name
    return [_listing(state, s, None if every else name) for s in rows
            if every or name in studies.readers_of(s)]


@router.get("/api/readers/{name}/summary")
def get_summary(request: Request, state: State, name: str) -> dict[str, Any]:
    """The study's figures (``worker.readers.summary``), for the operator only."""
    if not _may_see_results(request, state):
        who = calling(request, state)
        if who is not None:
            raise refuse(who, roles.STUDY_RESULTS)
    study = _study(state, name)
    with state.db.session() as session:
        return summary.of_study(session, study)


def _current(state: State, study: ReaderStudy, reader: str) -> tuple[ReaderRead | None, int]:
    with state.db.session() as session:
        read = studies.current(session, study.id, reader)
        if read is not None:
            studies.show(session, read)
        total = session.scalar(select(func.count()).select_from(ReaderRead).where(
            ReaderRead.study_id == study.id, ReaderRead.reader == reader)) or 0
        session.expunge_all()
    return read, int(total)


@router.get("/api/readers/{name}/current")
def get_current(request: Request, state: State, name: str) -> dict[str, Any]:
    """The caller's current read as their condition shows it; its clock starts now (once)."""
    study = _study(state, name)
    read, total = _current(state, study, _reader(request, state, study))
    with state.db.session() as session:
        view = reading.page(session, study, read, total)
    view["template"] = study.template.splitlines()
    return view


def _at(state: State, study: ReaderStudy, reader: str, position: int) -> ReaderRead:
    """The caller's read at ``position`` if it is the current one, else 409."""
    read, _ = _current(state, study, reader)
    if read is None or read.position != position:
        now_at = "finished" if read is None else f"at position {read.position}"
        raise HTTPException(409, f"{reader} is {now_at}, not at position {position}")
    return read


def _image_of(request: Request, state: State, name: str, position: int) -> Any:
    study = _study(state, name)
    reader = _reader(request, state, study)
    with state.db.session() as session:
        read = studies.read_at(session, study.id, reader, position)
        if read is None or read.shown_at is None:
            raise HTTPException(404, f"no case shown to {reader} at position {position}")
        try:
            source = reading.source_image(session, read.job_id)
        except (ConversionError, OSError) as exc:
            raise HTTPException(422, f"the source image cannot be shown: {exc}") from None
    if source is None:
        raise HTTPException(410, "the gateway no longer holds this case's source image")
    return source


@router.get("/api/readers/{name}/image")
def get_image_info(request: Request, state: State, name: str,
                   position: Annotated[int, Query(ge=1)]) -> dict[str, Any]:
    """The source's size, default window and value range (for the page's controls)."""
    described: dict[str, Any] = _image_of(request, state, name, position).describe()
    return described


@router.get("/api/readers/{name}/image.png")
def get_image(request: Request, state: State, name: str,
              position: Annotated[int, Query(ge=1)],
              center: Annotated[float | None, Query()] = None,
              width: Annotated[float | None, Query(ge=1)] = None) -> Response:
    """The case's source image at full resolution under the window asked for (the image's
    own without one), through the gateway's display chain."""
    source = _image_of(request, state, name, position)
    if center is not None and not source.low - 1e6 <= center <= source.high + 1e6:
        raise HTTPException(422, "center: outside the image's range of values")
    try:
        png = render_png(source, center, width)
    except ConversionError as exc:
        raise HTTPException(422, str(exc)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def _take(request: Request, state: State, name: str, position: int,
          act: Callable[[Session, ReaderRead], None], reporting: bool = False) -> None:
    """Do ``act`` on the caller's read at ``position``, which must be their current one
    (409 otherwise); a StudyError it raises is the client's: 409 for a step out of order
    (a second report, answers before the report), else 422 (what was sent is wrong)."""
    study = _study(state, name)
    read = _at(state, study, _reader(request, state, study), position)
    with state.db.session() as session:
        row = session.get(ReaderRead, read.id)
        assert row is not None
        reported = row.reported_at is not None
        try:
            act(session, row)
        except studies.StudyError as exc:
            out_of_order = reported if reporting else not reported
            raise HTTPException(409 if out_of_order else 422, str(exc)) from None


@router.post("/api/readers/{name}/report")
def post_report(request: Request, state: State, name: str, body: ReportIn) -> dict[str, Any]:
    """The report for the current read (verbatim); the questionnaire follows (409 for a
    position that is not the reader's current one, 422 for an empty report)."""
    _take(request, state, name, body.position, lambda s, row: studies.submit_report(
        s, row, body.report, body.active_seconds), reporting=True)
    return get_current(request, state, name)


@router.post("/api/readers/{name}/answers")
def post_answers(request: Request, state: State, name: str,
                 body: AnswersIn) -> dict[str, Any]:
    """The questionnaire for the current read, complete (422 naming what is missing); the
    next read follows."""
    _take(request, state, name, body.position,
          lambda s, row: studies.submit_answers(s, row, body.answers, body.comment))
    return get_current(request, state, name)


@router.post("/api/readers/{name}/active", status_code=204)
def post_active(request: Request, state: State, name: str, body: ActiveIn) -> Response:
    """Seconds the page was visible since its last count (ignored once reported)."""
    _take(request, state, name, body.position,
          lambda s, row: studies.add_active(s, row, body.seconds))
    return Response(status_code=204)


@page_router.get("/read/{name}", dependencies=[Depends(require_login)])
def reading_page(name: str) -> Response:
    """The reading page (static; it reads the API above with the session)."""
    del name
    return HTMLResponse((STATIC / "reading.html").read_text())


@page_router.get("/static/reading.js")
def reading_js() -> Response:
    return Response((STATIC / "reading.js").read_text(), media_type="text/javascript")


@page_router.get("/static/studies.js")
def studies_js() -> Response:
    """The dashboard's reader-study section (code, no data)."""
    return Response((STATIC / "studies.js").read_text(), media_type="text/javascript")

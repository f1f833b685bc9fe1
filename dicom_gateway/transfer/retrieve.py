"""Pulling studies from an archive: DIMSE (C-FIND, then C-MOVE or C-GET) and DICOMweb
(QIDO-RS search, WADO-RS retrieve).  Queries yield Study Instance UIDs one at a time, so
an archive of any size is never listed in memory at once.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_gateway.uids import is_valid_uid
from models.http_status import describe_http_status, is_permanent_http_status


class RetrieveError(RuntimeError):
    """The archive could not be queried or did not send a study; the message says why.

    ``permanent``: asking again cannot help (an HTTP status the one rule calls permanent).
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Node:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Node:
        m = re.fullmatch(r"([^@\s]{1,16})@([^:\s]+):(\d{1,5})", text.strip())
        if not m:
            raise ValueError(f"{text!r} is not AE@host:port")
        return cls(m[1], m[2], int(m[3]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class StudyQuery:
    """What to look for: a date range (YYYYMMDD), a modality, accessions, or study UIDs."""

    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    accessions: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()

    def identifiers(self) -> Iterator[Dataset]:
        """One C-FIND identifier per accession or UID asked for, or one for the range."""
        def base() -> Dataset:
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = ""
            ds.StudyDate = f"{self.date_from}-{self.date_to}" if (
                self.date_from or self.date_to) else ""
            ds.ModalitiesInStudy = self.modality
            ds.AccessionNumber = ""
            return ds

        if self.study_uids:
            for uid in self.study_uids:
                ds = base()
                ds.StudyInstanceUID = uid
                yield ds
        elif self.accessions:
            for accession in self.accessions:
                ds = base()
                ds.AccessionNumber = accession
                yield ds
        else:
            yield base()


def _associate(node: Node, calling_ae: str, contexts: Iterable[str],
               roles: list[Any] | None = None, handlers: list[Any] | None = None) -> Any:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for context in contexts:
        ae.add_requested_context(context, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=roles or [],
                         evt_handlers=handlers or [])
    if not assoc.is_established:
        raise RetrieveError(f"no association with {node} (rejected or unreachable)")
    return assoc


def find_studies(node: Node, calling_ae: str, query: StudyQuery) -> Iterator[str]:
    """C-FIND at study level: the Study Instance UIDs that match, each once."""
    seen: set[str] = set()
    for identifier in query.identifiers():
        assoc = _associate(node, calling_ae, [StudyRootQueryRetrieveInformationModelFind])
        try:
            for status, found in assoc.send_c_find(
                    identifier, StudyRootQueryRetrieveInformationModelFind):
                if not status:
                    raise RetrieveError(f"C-FIND to {node}: no response (timeout)")
                code = int(status.Status)
                if code in (0xFF00, 0xFF01) and found is not None:
                    uid = str(found.get("StudyInstanceUID", ""))
                    if is_valid_uid(uid) and uid not in seen:
                        seen.add(uid)
                        yield uid
                elif code not in (0x0000, 0xFF00, 0xFF01):
                    raise RetrieveError(f"C-FIND to {node}: status 0x{code:04X}")
        finally:
            if assoc.is_established:
                assoc.release()


@dataclass(frozen=True)
class Retrieved:
    completed: int
    failed: int
    status: int


def _study(uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return ds


def _follow(assoc: Any, responses: Iterator[tuple[Dataset, Any]],
            what: str) -> tuple[int, int, int]:
    """Read a C-MOVE/C-GET's responses to the end, then release: (completed, failed, status).

    The sub-operation counts are the last ones the archive reported; a pending response
    without them keeps the earlier ones.
    """
    completed = failed = last = 0
    try:
        for status, _ in responses:
            if not status:
                raise RetrieveError(f"{what}: no response (timeout)")
            last = int(status.Status)
            completed = int(status.get("NumberOfCompletedSuboperations", completed) or 0)
            failed = int(status.get("NumberOfFailedSuboperations", failed) or 0)
    finally:
        if assoc.is_established:
            assoc.release()
    return completed, failed, last


def move_study(node: Node, calling_ae: str, destination_ae: str, study_uid: str) -> Retrieved:
    """C-MOVE a study to ``destination_ae`` (our own listener, known to the archive)."""
    assoc = _associate(node, calling_ae, [StudyRootQueryRetrieveInformationModelMove])
    completed, failed, last = _follow(
        assoc, assoc.send_c_move(_study(study_uid), destination_ae,
                                 StudyRootQueryRetrieveInformationModelMove), f"C-MOVE from {node}")
    if last not in (0x0000, 0xB000):
        raise RetrieveError(f"C-MOVE of study {study_uid} from {node} to {destination_ae}: "
                            f"status 0x{last:04X} ({completed} sent, {failed} failed)")
    return Retrieved(completed, failed, last)


def get_study(node: Node, calling_ae: str, study_uid: str,
              on_instance: Callable[[Dataset], int]) -> Retrieved:
    """C-GET a study over our own association; ``on_instance`` stores each dataset and
    returns the C-STORE status to answer (0x0000 only once it is safely stored)."""
    storage = [str(cx.abstract_syntax) for cx in StoragePresentationContexts][:120]
    roles = [build_role(uid, scp_role=True) for uid in storage]

    def handle(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        return on_instance(ds)

    assoc = _associate(node, calling_ae, [StudyRootQueryRetrieveInformationModelGet,
                                          *storage],
                       roles, [(evt.EVT_C_STORE, handle)])
    completed, failed, last = _follow(
        assoc, assoc.send_c_get(_study(study_uid), StudyRootQueryRetrieveInformationModelGet),
        f"C-GET from {node}")
    if last not in (0x0000, 0xB000):
        raise RetrieveError(f"C-GET of study {study_uid} from {node}: status 0x{last:04X}")
    return Retrieved(completed, failed, last)


# -- DICOMweb ------------------------------------------------------------------------------

def dicomweb_client(root: str, session: requests.Session,
                    timeout: float = 120.0) -> DICOMwebClient:
    """A ``dicomweb-client`` for ``root`` that never retries on its own: a failed request
    is reported once, and the gateway's rule (models.http_status) says whether it is
    worth another try, so the library's retry loop would only delay that answer.  The
    caller owns ``session`` and closes it (the client never does)."""
    client = DICOMwebClient(url=root.rstrip("/"), session=session, timeout=timeout)
    client.set_http_retry_params(retry=False)
    return client


def _web_error(what: str, exc: Exception) -> RetrieveError:
    """A RetrieveError for a failed DICOMweb request, permanent by the one HTTP rule."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    if isinstance(exc, requests.HTTPError) and isinstance(code, int):
        return RetrieveError(f"{what}: {describe_http_status(code)}",
                             permanent=is_permanent_http_status(code))
    return RetrieveError(f"{what}: {type(exc).__name__}: {exc}")


def _qido_filters(query: StudyQuery) -> list[dict[str, str]]:
    """One QIDO-RS filter set per UID or accession asked for, or one for the range."""
    common: dict[str, str] = {}
    if query.date_from or query.date_to:
        common["StudyDate"] = f"{query.date_from}-{query.date_to}"
    if query.modality:
        common["ModalitiesInStudy"] = query.modality
    if query.study_uids:
        return [{**common, "StudyInstanceUID": u} for u in query.study_uids]
    if query.accessions:
        return [{**common, "AccessionNumber": a} for a in query.accessions]
    return [common]


def qido_studies(root: str, query: StudyQuery, page: int = 100) -> Iterator[str]:
    """QIDO-RS ``/studies``, paged: the Study Instance UIDs that match, each once."""
    with requests.Session() as session:
        yield from _qido_pages(dicomweb_client(root, session), root, query, page)


def _qido_pages(client: DICOMwebClient, root: str, query: StudyQuery,
                page: int) -> Iterator[str]:
    seen: set[str] = set()
    for filters in _qido_filters(query):
        offset = 0
        while True:
            try:
                found = client.search_for_studies(limit=page, offset=offset,
                                                  search_filters=filters)
            except (requests.RequestException, ValueError) as exc:
                raise _web_error(f"QIDO-RS {root}", exc) from exc
            for study in found:
                value = (study.get("0020000D") or {}).get("Value") or [""]
                uid = str(value[0])
                if is_valid_uid(uid) and uid not in seen:
                    seen.add(uid)
                    yield uid
            if len(found) < page:
                break
            offset += page


def wado_study(root: str, study_uid: str, timeout: float = 120.0) -> Iterator[bytes]:
    """WADO-RS ``/studies/{uid}``: each instance as Part 10 bytes, as it arrives.

    ``dicomweb-client``'s ``iter_study`` reads the multipart body in chunks and splits
    it at CRLF-anchored delimiters, so one instance (and one read chunk) is in memory at
    a time, never the whole study; a study of any size streams through.
    """
    what = f"WADO-RS {root.rstrip('/')}/studies/{study_uid}"
    with requests.Session() as session:
        try:
            for ds in dicomweb_client(root, session, timeout).iter_study(study_uid):
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                del ds
                yield buf.getbuffer().tobytes()
        except (requests.RequestException, ValueError, InvalidDicomError) as exc:
            raise _web_error(what, exc) from exc

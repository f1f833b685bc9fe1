"""Every SR the gateway writes passes IHE's validator: Pixelmed's ``DicomSRValidator``.

IHE tests an AI Results (AIR) Evidence Creator with Pixelmed (Gazelle EVS: no errors,
warnings allowed).  Here each result status comes from a real backend path, as a site
meets it: the vLLM stand-in over HTTP and the tiny random-weight Qwen2.5-VL on the
Transformers backend (forced to reply a refusal or an untagged text where greedy random
weights would not), as well as the mock.  The result crosses into the SR as the
pipeline's does (``result_payload`` -> ``draft_from_result`` -> ``build_sr``); each SR,
its Comprehensive SR form, a superseding version and an addendum are validated by
Pixelmed and by dicom3tools.  The end-to-end tests run Pixelmed on the SRs they deliver.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from dicom_gateway.documents.addendum import AddendumContent, ThreadItem, build_addendum
from dicom_gateway.documents.sr import SRIdentity, as_comprehensive_sr, build_sr
from dicom_gateway.imaging.conversion import convert_file
from models.backend import Backend
from models.registry import BackendConfig, get_backend
from models.study import run_study
from tests.peers import dciodvfy_errors, pixelmed_verdict, sample_file
from tests.random_qwen import ForcedReplies
from tests.vllm_standin import REFUSAL
from worker.pipeline.inference import result_payload
from worker.pipeline.reporting import draft_from_result

pytestmark = pytest.mark.integration  # java, dciodvfy, the stand-in and torch

# (backend, status): every status each real backend can be brought to reply.
CASES = [
    ("mock", "mock"), ("mock", "mock with labels"),
    ("openai", "ok"), ("openai", "refused"), ("openai", "truncated"),
    ("openai", "no_labels"),
    ("local", "ok"), ("local", "refused"), ("local", "truncated"), ("local", "unparseable"),
]


def identity(job: str, version: int) -> SRIdentity:
    return SRIdentity.derive("seed", "study", job, version, "backend|m@r",
                             "CXR Reason Gateway", "cxr-reason-gateway test", "Test site")


@pytest.fixture(scope="module")
def model_input() -> bytes:
    return convert_file(sample_file("RG1_UNCR.dcm")).png


@pytest.fixture(scope="module")
def source() -> Dataset:
    return dcmread(sample_file("RG1_UNCR.dcm"), stop_before_pixels=True)


def _local(checkpoint: Path) -> Backend:
    return get_backend(BackendConfig(name="local", model_id=str(checkpoint), device="cpu",
                                     allow_cpu=True, local_files_only=True))


def _forced(request: pytest.FixtureRequest, findings: str) -> Path:
    from tests.random_qwen import build_checkpoint

    out = request.getfixturevalue("tmp_path_factory").mktemp("forced")
    return build_checkpoint(out, size="tiny", forced=ForcedReplies(findings=findings))


def result_for(request: pytest.FixtureRequest, backend_name: str, status: str,
               image: bytes) -> dict[str, Any]:
    """The stored result a job with this status gets, from a real run of that backend."""
    tokens: dict[str, int] = {}
    if backend_name == "mock":
        labels = ("Edema",) if status == "mock with labels" else ()
        backend = get_backend(BackendConfig(name="mock", mock_labels=labels))
    elif backend_name == "openai":
        standin = request.getfixturevalue("vllm_standin")
        standin.reset(labels={"ok": ("Cardiomegaly", "Pleural Effusion"),
                              "no_labels": ()}.get(status))
        if status == "refused":
            standin.reset(refuse_sha256=[hashlib.sha256(image).hexdigest()])
        if status == "truncated":
            tokens = {"findings_tokens": 12}
        backend = get_backend(BackendConfig(name="openai", openai_url=standin.url))
    else:
        checkpoint = {
            "ok": lambda: request.getfixturevalue("tiny_qwen_labels"),
            "truncated": lambda: request.getfixturevalue("tiny_qwen"),
            "refused": lambda: _forced(request, REFUSAL),
            "unparseable": lambda: _forced(request, "Frontal chest film, reviewed."),
        }[status]()
        tokens = {"findings_tokens": 8} if status == "truncated" else {}
        backend = _local(checkpoint)
    payload = result_payload(backend, run_study(backend, image, **tokens))
    assert payload["status"] == status.split(" ")[0], payload
    return payload


def assert_valid(path: Path) -> list[str]:
    """0 errors from Pixelmed and from dciodvfy; Pixelmed's warnings, for the caller."""
    errors, warnings = pixelmed_verdict(path)
    assert errors == [], "\n".join(errors)
    assert dciodvfy_errors(path) == []
    return warnings


@pytest.mark.parametrize(("backend_name", "status"), CASES,
                         ids=[f"{b}-{s.replace(' ', '-')}" for b, s in CASES])
def test_every_sr_of_every_status_passes_pixelmed_and_dciodvfy(
        request: pytest.FixtureRequest, tmp_path: Path, model_input: bytes,
        source: Dataset, backend_name: str, status: str) -> None:
    payload = result_for(request, backend_name, status, model_input)
    draft = draft_from_result(payload, "mimic-v1")
    first = build_sr(source, draft, identity("job-1", 1))
    written = {"first": first}
    if status in ("ok", "mock"):  # the other documents once per backend: they share the tree
        answer = ThreadItem("reviewer-1", "2026-12-07T10:00:00Z", "Is there an effusion?",
                            str(payload["answer"] or payload["findings_text"]),
                            str(payload["reasoning"]), "mock" if draft.is_mock else "answered")
        written.update(
            comprehensive=as_comprehensive_sr(first),
            superseding=build_sr(source, draft, identity("job-1", 2),
                                 previous_versions=[first]),
            addendum=build_addendum(source, first,
                                    AddendumContent((answer,), draft.algorithm, draft.is_mock),
                                    "question-1", ordinal=1))
    paths = {name: tmp_path / f"{name}.dcm" for name in written}
    for name, ds in written.items():
        ds.save_as(paths[name], enforce_file_format=True)
    with ThreadPoolExecutor(2) as pool:  # a JVM each: two at once on two cores
        warnings = dict(zip(paths, pool.map(assert_valid, paths.values()), strict=True))
    assert warnings == {name: [] for name in written}  # no template departure either


def test_the_check_fails_on_a_code_outside_the_templates_context_group(
        tmp_path: Path, source: Dataset) -> None:
    """The control: the SR as it was before (the procedure reported as a chest X-ray code,
    which CID 100 does not hold) gets Pixelmed's error, so a clean verdict means clean."""
    from dicom_gateway.documents import codes as sr_codes
    from worker.pipeline.reporting import draft_from_result as draft_of

    payload = {"status": "mock", "labels": [], "is_mock": True, "model_id": "m",
               "model_revision": "r", "backend": "mock", "prompt": "p"}
    sr = deepcopy(build_sr(source, draft_of(payload, "mimic-v1"), identity("job-1", 1)))
    for item in sr.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "121058":  # Procedure reported
            item.ConceptCodeSequence[0].CodeValue = sr_codes.PROCEDURE_CXR.value
            item.ConceptCodeSequence[0].CodeMeaning = sr_codes.PROCEDURE_CXR.meaning
    path = tmp_path / "old.dcm"
    sr.save_as(path, enforce_file_format=True)
    errors, _ = pixelmed_verdict(path)
    assert len(errors) == 1 and "not found in context group 100" in errors[0], errors
    assert dciodvfy_errors(path) == []  # dciodvfy alone would not have caught it

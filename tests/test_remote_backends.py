"""openai and hf-space backends against loopback servers that speak those protocols."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from models.backend import DEFAULT_MODEL_ID, PINNED_REVISION, UNREPORTED, BackendError
from models.hf_space import HFSpaceBackend, apply_patch
from models.openai_compat import OpenAIBackend
from models.registry import BackendConfig, describe, get_backend
from models.study import run_studies
from tests.protocol_servers import gradio_space_server, openai_server
from tests.vllm_standin import SNAPSHOT_ROOT, VLLMStandin
from worker.pipeline.stages import draft_from_result, result_payload

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)
FINDINGS = "<think> blunted left angle </think>\n<answer> Pleural Effusion </answer>"


@pytest.mark.integration  # an HTTP server on loopback
def test_openai_two_turns_and_truncation() -> None:
    def reply(body: dict[str, Any]) -> tuple[int, Any]:
        last = body["messages"][-1]["content"]
        if last == "Write a structured report.":
            return 200, {"choices": [{"message": {"content": "FINDINGS:\nLungs: effusion."},
                                      "finish_reason": "length"}],
                         "usage": {"completion_tokens": 7}}
        return 200, {"choices": [{"message": {"content": FINDINGS}, "finish_reason": "stop"}],
                     "usage": {"completion_tokens": 12}}

    srv = openai_server(reply)
    try:
        backend = OpenAIBackend(srv.url, "nvidia/NV-Reason-CXR-3B")
        (res,) = run_studies(backend, [PNG], report_tokens=7)
    finally:
        srv.close()
    assert res.parsed.labels == ("Pleural Effusion",)
    assert res.findings.generated_tokens == 12
    assert res.report is not None and res.report.hit_limit(7)
    path, first = srv.requests[0]
    assert path == "/v1/chat/completions" and first["temperature"] == 0
    content = first["messages"][0]["content"]
    assert content[0]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(
        PNG).decode()
    assert content[1] == {"type": "text", "text": "Find abnormalities and support devices."}
    second = srv.requests[1][1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == FINDINGS  # the first reply, verbatim
    assert second[0]["content"][0]["type"] == "image_url"  # the image stays in turn 1


@pytest.mark.integration  # an HTTP server on loopback
def test_openai_client_errors_are_permanent_server_errors_transient() -> None:
    srv = openai_server(lambda body: (400, {"error": "bad request"}))
    try:
        with pytest.raises(BackendError) as err:
            OpenAIBackend(srv.url, "m").generate([run_req()])
        assert err.value.permanent
    finally:
        srv.close()
    srv = openai_server(lambda body: (503, {"error": "overloaded"}))
    try:
        with pytest.raises(BackendError) as err:
            OpenAIBackend(srv.url, "m").generate([run_req()])
        assert not err.value.permanent
    finally:
        srv.close()


def run_req():  # type: ignore[no-untyped-def]
    from models.study import findings_request

    return findings_request(PNG)


@pytest.mark.integration  # an HTTP server on loopback
def test_hf_space_queue_protocol() -> None:
    srv = gradio_space_server(["<think> blunted", " left angle </think>\n",
                               "<answer> Pleural Effusion </answer>"])
    try:
        backend = HFSpaceBackend(srv.url, timeout=10)
        (res,) = run_studies(backend, [PNG], with_report=False)
    finally:
        srv.close()
    assert res.findings.text == FINDINGS
    assert res.parsed.labels == ("Pleural Effusion",)
    join = next(r for r in srv.requests if r[1] == "/gradio_api/queue/join")
    payload = json.loads(join[2])
    assert payload["fn_index"] == 3
    prompt, history, image = payload["data"]
    assert prompt == "Find abnormalities and support devices." and history == []
    assert image["path"] == "/tmp/gradio/abc/cxr.png"
    assert image["meta"] == {"_type": "gradio.FileData"}


def test_hf_space_warns_that_images_leave_the_site(caplog: pytest.LogCaptureFixture) -> None:
    HFSpaceBackend("http://127.0.0.1:9")
    assert "outside this site" in caplog.text


def test_gradio_patches() -> None:
    assert apply_patch("...", [["replace", [], "a"], ["append", [], "b"]]) == "ab"
    assert apply_patch("x", "whole value") == "whole value"


# -- which model made a result: one identity, before and after loading ---------------------

DECLARED = "0123456789abcdef0123456789abcdef01234567"


def test_openai_identity_is_the_reported_or_declared_revision_never_the_url(
        vllm_standin: VLLMStandin) -> None:
    vllm_standin.reset(root=SNAPSHOT_ROOT)
    backend = OpenAIBackend(vllm_standin.url, DEFAULT_MODEL_ID)
    results = run_studies(backend, [PNG, PNG + b"\0"])
    assert backend.info.model_revision == PINNED_REVISION  # the commit in the served root
    assert vllm_standin.models_queries == 1  # asked once, for all four requests
    draft = draft_from_result(result_payload(backend, results[0]), "conversion")
    assert draft.algorithm.version == f"hf:{DEFAULT_MODEL_ID}@{PINNED_REVISION}"
    said = " ".join((draft.algorithm.version, *draft.algorithm.parameters))
    assert "127.0.0.1" not in said and str(vllm_standin.port) not in said

    vllm_standin.reset(root=DEFAULT_MODEL_ID)  # `vllm serve <repo id>`: no commit anywhere
    assert OpenAIBackend(vllm_standin.url, DEFAULT_MODEL_ID).info.model_revision == UNREPORTED

    vllm_standin.reset(root=SNAPSHOT_ROOT)
    declared = OpenAIBackend(vllm_standin.url, DEFAULT_MODEL_ID, revision=DECLARED)
    (res,) = run_studies(declared, [PNG])
    assert draft_from_result(result_payload(declared, res), "c").algorithm.version == \
        f"hf:{DEFAULT_MODEL_ID}@{DECLARED}"
    assert vllm_standin.models_queries == 0 and len(vllm_standin.chat_requests()) == 2


def test_a_server_that_cannot_be_asked_stores_nothing_under_a_guess(
        vllm_standin: VLLMStandin) -> None:
    """/v1/models failing transiently fails the request (retried later) rather than letting
    a result be stored as "unreported" and never match its rerun."""
    backend = OpenAIBackend(vllm_standin.url, DEFAULT_MODEL_ID)
    vllm_standin.stop()
    with pytest.raises(BackendError) as err:
        backend.generate([run_req()])
    assert not err.value.permanent
    assert backend.info.model_revision == UNREPORTED  # shown meanwhile, never cached


def on_cpu(checkpoint: Path, revision: str | None = None) -> BackendConfig:
    return BackendConfig("local", model_id=str(checkpoint), revision=revision,
                         allow_cpu=True, device="cpu", local_files_only=True)


def test_describe_agrees_with_every_loaded_backend(vllm_standin: VLLMStandin, tiny_qwen: Path,
                                                   tmp_path: Path) -> None:
    vllm_standin.reset(root=SNAPSHOT_ROOT)
    snapshot = tmp_path / "models--site--cxr" / "snapshots" / DECLARED
    shutil.copytree(tiny_qwen, snapshot)
    cases = {
        BackendConfig("mock"): "mock|nvidia/NV-Reason-CXR-3B@" + PINNED_REVISION,
        BackendConfig("mock", model_id="site/other"): "mock|site/other@",
        BackendConfig("openai", openai_url=vllm_standin.url):
            f"openai|{DEFAULT_MODEL_ID}@{PINNED_REVISION}",
        BackendConfig("openai", openai_url=vllm_standin.url, revision=DECLARED):
            f"openai|{DEFAULT_MODEL_ID}@{DECLARED}",
        BackendConfig("hf-space-api", hf_space_url="https://cxr-demo.hf.space/"):
            f"hf-space|{DEFAULT_MODEL_ID}@space https://cxr-demo.hf.space",
        on_cpu(tiny_qwen): f"local|{tiny_qwen}@unpinned",
        on_cpu(snapshot): f"local|{snapshot}@{DECLARED}",  # a cache snapshot's commit
        on_cpu(tiny_qwen, revision="v1"): f"local|{tiny_qwen}@v1",
    }
    for cfg, key in cases.items():
        described = describe(cfg)
        assert described.key == key, cfg
        if cfg.revision == "v1":
            continue  # a checkpoint folder has no branch "v1" to load
        loaded = get_backend(cfg)
        assert (loaded.info.name, loaded.info.key, loaded.info.is_mock) == (
            described.name, key, described.is_mock), cfg


def test_a_hub_model_is_known_by_the_commit_its_cache_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-default repo id without a declared revision: the commit of the cached snapshot
    that ``main`` points at (what transformers loads), found without loading it."""
    from huggingface_hub import constants

    repo = tmp_path / "models--site--cxr"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(DECLARED)
    (repo / "snapshots" / DECLARED).mkdir(parents=True)
    (repo / "snapshots" / DECLARED / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert describe(BackendConfig("local", model_id="site/cxr")).model_revision == DECLARED
    assert describe(BackendConfig("local", model_id="site/absent")).model_revision == "unpinned"

"""openai and hf-space backends against loopback servers that speak those protocols."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from models.backend import BackendError
from models.hf_space import HFSpaceBackend, apply_patch
from models.openai_compat import OpenAIBackend
from models.study import run_studies
from tests.protocol_servers import gradio_space_server, openai_server

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)
FINDINGS = "<think> blunted left angle </think>\n<answer> Pleural Effusion </answer>"


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

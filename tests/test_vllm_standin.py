"""The vLLM stand-in itself: its answers parse as the model's would, its engine keeps to its
capacity, queues in order and refuses past its queue, and it runs as a peer process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from models.backend import BackendError
from models.openai_compat import OpenAIBackend
from models.parsing import OK, REFUSED, TRUNCATED
from models.study import findings_request, run_studies
from tests.vllm_standin import (
    REFUSAL,
    SNAPSHOT_ROOT,
    VLLMStandin,
    image_sha256,
    labels_for,
    start_subprocess,
)

MODEL = "nvidia/NV-Reason-CXR-3B"
IMAGES = [f"image-{i}".encode() * 40 for i in range(8)]


def wait_for(cond: Callable[[], bool], what: str, cap: float = 120.0) -> None:
    deadline = time.monotonic() + cap
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def holds(standin: VLLMStandin, n: int) -> Callable[[], bool]:
    """Whether n requests are generating or queued in the stand-in's engine."""
    return lambda: standin.engine.running + standin.engine.waiting == n


def post_chat(url: str, image: bytes, prompt: str = "Find abnormalities and support devices.",
              max_tokens: int = 2048) -> tuple[int, dict[str, Any]]:
    backend = OpenAIBackend(url, MODEL)
    body = json.dumps({"model": MODEL, "max_tokens": max_tokens, "temperature": 0,
                       "messages": backend.messages(findings_request(image, prompt))}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_answers_parse_ok_with_labels_from_the_image_and_a_templated_report(
        vllm_standin: VLLMStandin) -> None:
    results = run_studies(OpenAIBackend(vllm_standin.url, MODEL), IMAGES)
    for image, res in zip(IMAGES, results, strict=True):
        expected = labels_for(image_sha256(image))
        assert res.status == OK and res.labels == expected and res.parsed.format_ok
        assert res.parsed_report is not None and not res.parsed_report.truncated
        assert [s.heading for s in res.parsed_report.sections] == [
            "EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS", "IMPRESSION"]
        assert len(res.parsed_report.section("FINDINGS")) == 7  # the template's regions
    assert len({r.labels for r in results}) > 1  # the answer depends on the image
    records = vllm_standin.requests
    assert [r.turn for r in records].count("findings") == len(IMAGES)
    assert [r.turn for r in records].count("report") == len(IMAGES)
    assert all(r.status == 200 and r.completion_tokens > 0 for r in records)
    first = records[0].messages[0]["content"][0]["image_url"]["url"]
    assert first.startswith("sha256:") and first[7:] in {image_sha256(i) for i in IMAGES}


def test_fixed_labels_refusals_and_truncation(vllm_standin: VLLMStandin) -> None:
    refused_image = IMAGES[1]
    vllm_standin.reset(labels=["Cardiomegaly", "Pleural Effusion"],
                       refuse_sha256=[image_sha256(refused_image)])
    backend = OpenAIBackend(vllm_standin.url, MODEL)
    ok, refused = run_studies(backend, IMAGES[:2])
    assert ok.status == OK and ok.labels == ("Cardiomegaly", "Pleural Effusion")
    assert refused.status == REFUSED and refused.findings.text == REFUSAL
    (off_topic,) = run_studies(backend, [IMAGES[0]], prompt="What is the capital of France?")
    assert off_topic.status == REFUSED and off_topic.report is None
    (cut,) = run_studies(backend, [IMAGES[0]], findings_tokens=10)
    assert cut.status == TRUNCATED and cut.parsed.hit_token_limit
    last = vllm_standin.requests[-1]
    assert last.finish_reason == "length" and last.completion_tokens == 10
    assert len(cut.findings.text.split()) == 10


def test_peak_concurrency_never_exceeds_capacity_and_the_queue_is_fifo(
        vllm_standin: VLLMStandin) -> None:
    vllm_standin.reset(capacity=2)
    vllm_standin.hold()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures: list[Future[tuple[int, dict[str, Any]]]] = []
        for n, image in enumerate(IMAGES[:6], 1):
            futures.append(pool.submit(post_chat, vllm_standin.url, image))
            # one at a time, so the arrival order is known
            wait_for(holds(vllm_standin, n), f"{n} requests in the engine")
        assert (vllm_standin.engine.running, vllm_standin.engine.waiting) == (2, 4)
        vllm_standin.release_held()
        answers = [f.result() for f in futures]
    assert [code for code, _ in answers] == [200] * 6
    assert vllm_standin.peak_concurrency == 2
    records = vllm_standin.requests
    by_start = sorted(records, key=lambda r: r.started or 0.0)
    assert [r.image_sha256 for r in by_start[2:]] == \
        [image_sha256(i) for i in IMAGES[2:6]]  # the queued four started in arrival order


def test_beyond_the_queue_limit_the_server_says_overloaded(vllm_standin: VLLMStandin) -> None:
    vllm_standin.reset(capacity=1, queue_limit=1)
    vllm_standin.hold()
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = pool.submit(post_chat, vllm_standin.url, IMAGES[0])
        wait_for(lambda: vllm_standin.engine.running == 1, "one sequence generating")
        queued = pool.submit(post_chat, vllm_standin.url, IMAGES[1])
        wait_for(lambda: vllm_standin.engine.waiting == 1, "one request queued")
        code, body = post_chat(vllm_standin.url, IMAGES[2])
        assert code == 429 and "overloaded" in body["message"]
        with pytest.raises(BackendError) as err:  # the client treats it as transient
            OpenAIBackend(vllm_standin.url, MODEL).generate([findings_request(IMAGES[3])])
        assert not err.value.permanent
        vllm_standin.release_held()
        assert running.result()[0] == 200 and queued.result()[0] == 200
    assert [r.status for r in vllm_standin.requests] == [200, 200, 429, 429]
    assert vllm_standin.peak_concurrency == 1


def test_fail_first_and_unknown_model(vllm_standin: VLLMStandin) -> None:
    vllm_standin.reset(fail_first=2)
    backend = OpenAIBackend(vllm_standin.url, MODEL)
    for _ in range(2):
        with pytest.raises(BackendError) as err:
            backend.generate([findings_request(IMAGES[0])])
        assert not err.value.permanent and "503" in str(err.value)
    (gen,) = backend.generate([findings_request(IMAGES[0])])
    assert "<answer>" in gen.text
    with pytest.raises(BackendError) as err:
        OpenAIBackend(vllm_standin.url, "someone/else").generate([findings_request(IMAGES[0])])
    assert err.value.permanent
    assert [r.status for r in vllm_standin.requests] == [503, 503, 200, 404]


@pytest.mark.integration  # the stand-in as a subprocess
def test_as_a_peer_process_it_reports_its_root_and_its_record_over_http() -> None:
    proc = start_subprocess("--root", "snapshot", "--capacity", "3", "--labels", "Edema")
    try:
        with urllib.request.urlopen(f"{proc.url}/v1/models", timeout=30) as resp:
            models = json.loads(resp.read())
        assert models["object"] == "list"
        (entry,) = models["data"]
        assert entry["id"] == MODEL and entry["root"] == SNAPSHOT_ROOT
        assert entry["owned_by"] == "vllm" and entry["max_model_len"] == 8192
        results = run_studies(OpenAIBackend(proc.url, MODEL), IMAGES[:3])
        assert [r.labels for r in results] == [("Edema",)] * 3
        assert len(proc.requests) == 6 and 1 <= proc.peak_concurrency <= 3
        proc.reset()
        assert proc.requests == [] and proc.peak_concurrency == 0
    finally:
        proc.stop()
    assert proc.proc.returncode == 0


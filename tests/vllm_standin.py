"""A stand-in for a vLLM server serving NV-Reason-CXR-3B: the OpenAI chat-completions API,
answers in the model's trained shapes, and an engine with a fixed number of sequence slots.

Why not a canned reply: tests of the ``openai`` backend, of batching and of retries need a
peer that behaves like the real one in the ways that matter -- answers that parse to ok /
refused / truncated as the model's would, labels that depend on the image (so a reused
result is distinguishable from a fresh one), ``finish_reason: "length"`` when the token cap
cuts an answer, and a server that can only generate C sequences at once, queues the rest in
order and says "overloaded" past its queue.  Every request is recorded (image replaced by
its sha256) so a test can count what reached the server.

In-process: ``VLLMStandin(StandinConfig(...)).start()``; as a peer process:
``python -m tests.vllm_standin --port 0 [--capacity C] [--latency L] ...`` prints
``listening 127.0.0.1:PORT`` as its first line (``start_subprocess`` does that for a test).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import heapq
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from models.backend import DEFAULT_MODEL_ID, PINNED_REVISION
from models.labels import CHEXPERT_LABELS, NO_FINDING
from models.prompts import REPORT_PROMPT
from tests.protocol_servers import JSONHandler

ROOT = Path(__file__).resolve().parent.parent
# The paper's trained fallback for input that is not a chest X-ray (section 2.3).
REFUSAL = ("I'm sorry, I'm specialized in medical chest X-ray analysis. "
           "Please provide a frontal chest X-ray image.")
# A local snapshot root as `vllm serve /models/hub/...` would report it.
SNAPSHOT_ROOT = ("/models/hub/models--nvidia--NV-Reason-CXR-3B/snapshots/"
                 f"{PINNED_REVISION}")
_ON_TOPIC = re.compile(
    r"x-?ray|chest|radiograph|abnormalit|finding|lung|heart|pleura|report|image|"
    r"differential|impression|device|study|film", re.IGNORECASE)
_ABNORMAL = tuple(label for label in CHEXPERT_LABELS if label != NO_FINDING)

# One reasoning sentence and one report line per label, in the paper's FINDINGS regions.
_SIGNS: dict[str, tuple[str, str, str]] = {
    "Atelectasis": ("Lungs and pleural space", "There is linear opacity at the left base "
                    "with mild volume loss, in keeping with atelectasis.",
                    "Left basilar atelectasis."),
    "Cardiomegaly": ("Heart", "The cardiac silhouette is enlarged, the cardiothoracic ratio "
                     "is above one half.", "Cardiomegaly."),
    "Consolidation": ("Lungs and pleural space", "There is dense airspace opacity in the "
                      "right lower zone with air bronchograms, a consolidation.",
                      "Right lower lobe consolidation."),
    "Edema": ("Lungs and pleural space", "Vascular markings are indistinct with perihilar "
              "haziness and septal lines, suggesting pulmonary edema.",
              "Mild pulmonary edema."),
    "Enlarged Cardiomediastinum": ("Mediastinum and hila", "The mediastinum is widened "
                                   "beyond what projection explains.",
                                   "Enlarged cardiomediastinal silhouette."),
    "Fracture": ("Bones and soft tissues", "There is a cortical break in a left lateral rib.",
                 "Left rib fracture."),
    "Lung Lesion": ("Lungs and pleural space", "A rounded nodular density projects over the "
                    "right upper zone.", "Right upper zone nodule."),
    "Lung Opacity": ("Lungs and pleural space", "Patchy increased opacity is present in the "
                     "left mid zone.", "Left mid zone opacity."),
    "Pleural Effusion": ("Lungs and pleural space", "The left costophrenic angle is blunted "
                         "with a meniscus, a pleural effusion.", "Small left pleural effusion."),
    "Pleural Other": ("Lungs and pleural space", "There is apical pleural thickening on the "
                      "right.", "Right apical pleural thickening."),
    "Pneumonia": ("Lungs and pleural space", "Given the focal consolidation pattern, an "
                  "infectious process is the leading consideration.",
                  "Findings compatible with pneumonia."),
    "Pneumothorax": ("Lungs and pleural space", "A visceral pleural line is seen at the right "
                     "apex with no lung markings beyond it, a pneumothorax.",
                     "Small right apical pneumothorax."),
    "Support Devices": ("Medical devices", "A central venous catheter is present with its tip "
                        "projecting over the superior vena cava.",
                        "Central venous catheter in satisfactory position."),
}
_NORMAL_FINDINGS = {
    "Medical devices": "None.",
    "Central airways": "Trachea and main bronchi patent.",
    "Lungs and pleural space": "Lungs are clear; no effusion or pneumothorax.",
    "Mediastinum and hila": "Mediastinal contours normal.",
    "Heart": "Normal heart size.",
    "Upper abdomen and diaphragm": "No free subdiaphragmatic air.",
    "Bones and soft tissues": "No acute osseous abnormality.",
}


# -- answers: pure functions of the request ---------------------------------------------------

def image_sha256(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def labels_for(sha256: str, fixed: Sequence[str] | None = None) -> tuple[str, ...]:
    """The labels the stand-in reads in an image: fixed ones, else 0-3 abnormal labels chosen
    by the image's hash ("No Finding" when none), so every image has its own answer."""
    if fixed is not None:
        return tuple(fixed)
    digest = bytes.fromhex(sha256)
    count = digest[0] % 4
    out: list[str] = []
    for b in digest[1:]:
        if len(out) == count:
            break
        label = _ABNORMAL[b % len(_ABNORMAL)]
        if label not in out:
            out.append(label)
    return tuple(out) or (NO_FINDING,)


def findings_text(labels: Sequence[str]) -> str:
    """A reply in the trained shape: ``<think> review </think>\\n<answer> labels </answer>``."""
    signs = [_SIGNS[label][1] for label in labels if label in _SIGNS]
    review = ("This is a frontal chest radiograph. I review the devices, the airways, the "
              "lungs and pleura, the heart and mediastinum, and the bones in turn. "
              + (" ".join(signs) if signs else
                 "The lungs are clear, there is no effusion or pneumothorax, the heart size "
                 "is normal and there are no support devices.")
              + " Putting these together gives the final labels.")
    return f"<think> {review} </think>\n<answer> {', '.join(labels)} </answer>"


def report_text(labels: Sequence[str]) -> str:
    """A structured report in the paper's template, its findings following the labels."""
    regions = dict(_NORMAL_FINDINGS)
    impression: list[str] = []
    for label in labels:
        if label in _SIGNS:
            region, _, line = _SIGNS[label]
            regions[region] = line if regions[region] == _NORMAL_FINDINGS[region] \
                else f"{regions[region][:-1]}; {line[0].lower()}{line[1:]}"
            impression.append(line)
    findings = " ".join(f"{region}: {text}" for region, text in regions.items())
    numbered = "\n".join(f"{i}. {line}" for i, line in
                         enumerate(impression or ["No acute cardiopulmonary abnormality."], 1))
    return ("<think> I write the report from the findings above, following the template. "
            "</think>\n"
            "EXAMINATION: CHEST (PA).\nINDICATION: Not provided.\n"
            "TECHNIQUE: Single frontal view of the chest.\nCOMPARISON: None.\n"
            f"FINDINGS: {findings}\nIMPRESSION:\n{numbered}")


def followup_text(labels: Sequence[str]) -> str:
    return (f"<think> The question follows the reading above. </think>\n"
            f"Based on the image, the findings are: {', '.join(labels)}.")


def word_count(text: str) -> int:
    """Completion tokens, approximated by words (what a test can check without a tokenizer)."""
    return len(text.split())


def cut_to(text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` words of a text, as a token cap leaves an answer."""
    return " ".join(text.split()[:max_tokens])


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content
                        if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image_of(messages: Sequence[dict[str, Any]]) -> bytes | None:
    for msg in messages:
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                _, _, data = url.partition(";base64,")
                try:
                    return base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    return None
    return None


def redacted(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with each image data URL replaced by ``sha256:<hex>`` of its bytes."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            parts: list[Any] = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    img = _image_of([{"content": [part]}])
                    parts.append({"type": "image_url", "image_url": {
                        "url": "sha256:" + (image_sha256(img) if img is not None else "invalid")}})
                else:
                    parts.append(part)
            msg = {**msg, "content": parts}
        out.append(msg)
    return out


def turn_of(messages: Sequence[dict[str, Any]]) -> str:
    """findings (one user turn), report (the report follow-up) or followup (any other)."""
    users = [m for m in messages if m.get("role") == "user"]
    if len(users) <= 1:
        return "findings"
    return "report" if _text_of(users[-1].get("content")).strip() == REPORT_PROMPT \
        else "followup"


# -- configuration, records, engine ---------------------------------------------------------

@dataclass
class StandinConfig:
    """How the stand-in behaves; every field is also a command-line option."""

    model: str = DEFAULT_MODEL_ID
    root: str = DEFAULT_MODEL_ID  # what `vllm serve <model>` reports; SNAPSHOT_ROOT for a path
    max_model_len: int = 8192
    capacity: int = 256  # sequences generating at once (vLLM's max_num_seqs)
    latency: float = 0.0  # seconds each sequence holds its slot
    queue_limit: int | None = None  # waiting requests beyond the slots; None = unlimited
    scheduling: str = "fcfs"  # or "priority": vLLM's --scheduling-policy
    metrics: bool = True  # GET /metrics with vLLM's load gauges
    overload_status: int = 429
    fail_first: int = 0  # answer this many first chat requests with fail_status
    fail_status: int = 503
    labels: tuple[str, ...] | None = None  # read these in every image instead of hashing
    refuse_sha256: frozenset[str] = frozenset()  # images answered with the refusal

    def __post_init__(self) -> None:
        unknown = [lab for lab in self.labels or () if lab not in CHEXPERT_LABELS]
        if unknown:
            raise ValueError(f"labels must be CheXpert labels, not {unknown}")
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        if self.scheduling not in ("fcfs", "priority"):
            raise ValueError("scheduling must be fcfs or priority")


@dataclass
class RequestRecord:
    """One chat request as the server saw it (times are ``time.time()`` seconds)."""

    received: float
    path: str
    status: int = 0
    started: float | None = None
    finished: float | None = None
    turn: str = ""
    model: str = ""
    max_tokens: int | None = None
    priority: int = 0  # the request's "priority" field (0 when it sent none)
    image_sha256: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    completion_tokens: int = 0
    finish_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)


class Engine:
    """At most ``capacity`` sequences at once; the rest wait in order (arrival, or priority
    then arrival), up to ``queue_limit`` waiting (then refused).  Tracks the peak number
    generating.  Each waiter has its own event and only the head of the queue is woken
    when a slot frees, so thousands waiting cost nothing (a shared condition woke them all
    on every change, and the stand-in spent its time there instead of serving)."""

    def __init__(self, capacity: int, queue_limit: int | None, scheduling: str = "fcfs"
                 ) -> None:
        self.capacity = capacity
        self.queue_limit = queue_limit
        self.scheduling = scheduling
        self.running = 0
        self.peak = 0
        self._waiting: list[tuple[int, int, threading.Event]] = []  # a heap
        self._arrivals = itertools.count()
        self._lock = threading.Lock()

    def admit(self, priority: int = 0) -> bool:
        """Wait for a slot (False at once when the queue is full)."""
        with self._lock:
            if self.queue_limit is not None and not self._free() \
                    and len(self._waiting) >= self.queue_limit:
                return False
            me = (priority if self.scheduling == "priority" else 0, next(self._arrivals),
                  threading.Event())
            heapq.heappush(self._waiting, me)
        while True:
            with self._lock:
                me[2].clear()
                if self._waiting[0] is me and self.running < self.capacity:
                    heapq.heappop(self._waiting)
                    self.running += 1
                    self.peak = max(self.peak, self.running)
                    self._wake_head()
                    return True
                self._wake_head()
            me[2].wait()

    def _wake_head(self) -> None:
        """Under the lock: let the first in the queue look, if a slot is free."""
        if self._waiting and self.running < self.capacity:
            self._waiting[0][2].set()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def load(self) -> tuple[int, int]:
        """(running, waiting) now, as vLLM's gauges say them."""
        with self._lock:
            return self.running, len(self._waiting)

    def _free(self) -> bool:
        return self.running < self.capacity and not self._waiting

    def release(self) -> None:
        with self._lock:
            self.running -= 1
            self._wake_head()

    def set_capacity(self, capacity: int) -> None:
        with self._lock:
            self.capacity = capacity
            self._wake_head()

    def reset_peak(self) -> None:
        with self._lock:
            self.peak = self.running


# -- the server -----------------------------------------------------------------------------

class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    standin: VLLMStandin


class _Handler(JSONHandler):
    protocol_version = "HTTP/1.1"
    # a kept-alive connection must not wait for delayed ACKs between a reply's head and
    # body (Nagle): vLLM's server (uvicorn) sets TCP_NODELAY too
    disable_nagle_algorithm = True
    server: _HTTPServer

    def _read(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw) if raw.strip() else {}

    def do_GET(self) -> None:  # noqa: N802
        standin = self.server.standin
        if self.path == "/v1/models":
            self._json(200, standin.models())
        elif self.path == "/health":
            self._json(200, {})
        elif self.path == "/metrics" and standin.config.metrics:
            self._text(200, standin.metrics_text())
        elif self.path == "/_standin/requests":
            self._json(200, {"requests": [r.as_json() for r in standin.requests],
                             "peak_concurrency": standin.peak_concurrency,
                             "running": standin.engine.load()[0],
                             "waiting": standin.engine.load()[1],
                             "models_queries": standin.models_queries,
                             "capacity": standin.config.capacity})
        else:
            self._json(404, _error(f"{self.path} not found", "NotFoundError", 404))

    def do_POST(self) -> None:  # noqa: N802
        standin = self.server.standin
        try:
            body = self._read()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._json(400, _error(f"body is not JSON: {exc}", "BadRequestError", 400))
            return
        if self.path == "/_standin/reset":
            standin.reset(**(body or {}))
            self._json(200, {"reset": True})
        elif self.path in ("/_standin/hold", "/_standin/release"):
            standin.hold() if self.path.endswith("hold") else standin.release_held()
            self._json(200, {"held": self.path.endswith("hold")})
        elif self.path == "/v1/chat/completions":
            code, payload = standin.complete(self.path, body)
            self._json(code, payload)
        else:
            self._json(404, _error(f"{self.path} not found", "NotFoundError", 404))


def metrics_page(model: str, running: int, waiting: int) -> str:
    """vLLM's two load gauges as its /metrics page says them (names, label, type)."""
    label = f'{{engine="0",model_name="{model}"}}'
    return (f"# HELP vllm:num_requests_running Number of requests in model execution "
            f"batches.\n# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{label} {float(running)}\n"
            f"# HELP vllm:num_requests_waiting Number of requests waiting to be "
            f"processed.\n# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{label} {float(waiting)}\n")


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    """vLLM's error body."""
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}


class VLLMStandin:
    """The stand-in server in this process (``.url``, ``.requests``, ``.reset()``, ``.stop()``)."""

    def __init__(self, config: StandinConfig | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.config = config or StandinConfig()
        self.engine = Engine(self.config.capacity, self.config.queue_limit,
                             self.config.scheduling)
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._failed = 0
        self.models_queries = 0  # GET /v1/models (not model requests: kept apart)
        self._gate = threading.Event()  # cleared by hold(): admitted sequences wait on it
        self._gate.set()
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.standin = self
        self._thread: threading.Thread | None = None

    def start(self) -> VLLMStandin:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="vllm-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far (chat completions, including refused ones), in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def peak_concurrency(self) -> int:
        return self.engine.peak

    def chat_requests(self, turn: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if turn is None or r.turn == turn]

    def hold(self) -> None:
        """Keep admitted sequences from finishing until ``release_held``: lets a test see
        the engine full and the queue as it is, with no timing involved."""
        self._gate.clear()

    def release_held(self) -> None:
        self._gate.set()

    def reset(self, **changes: Any) -> None:
        """Forget the record and the peak; ``changes`` set config fields (e.g. fail_first=2,
        latency=0.5, labels=[...]); the fail-first count starts again."""
        with self._lock:
            if "labels" in changes and changes["labels"] is not None:
                changes["labels"] = tuple(changes["labels"])
            if "refuse_sha256" in changes:
                changes["refuse_sha256"] = frozenset(changes["refuse_sha256"])
            self.config = dataclasses.replace(self.config, **changes)
            self.engine.set_capacity(self.config.capacity)
            self.engine.queue_limit = self.config.queue_limit
            self.engine.scheduling = self.config.scheduling
            self._records.clear()
            self._failed = 0
            self.models_queries = 0
        self.engine.reset_peak()

    def models(self) -> dict[str, Any]:
        """GET /v1/models, as vLLM answers it (counted in ``models_queries``)."""
        with self._lock:
            self.models_queries += 1
        return {"object": "list", "data": [{
            "id": self.config.model, "object": "model", "created": int(time.time()),
            "owned_by": "vllm", "root": self.config.root, "parent": None,
            "max_model_len": self.config.max_model_len, "permission": []}]}

    def metrics_text(self) -> str:
        """GET /metrics: vLLM's two load gauges, now."""
        return metrics_page(self.config.model, *self.engine.load())


    def complete(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One chat completion: record it, then refuse, fail, queue or answer."""
        messages = body.get("messages") if isinstance(body, dict) else None
        record = RequestRecord(received=time.time(), path=path)
        with self._lock:
            self._records.append(record)
            config = self.config
        if not isinstance(messages, list) or not messages:
            record.status = 400
            return 400, _error("messages must be a non-empty list", "BadRequestError", 400)
        image = _image_of(messages)
        record.turn = turn_of(messages)
        record.model = str(body.get("model", ""))
        record.max_tokens = body.get("max_tokens")
        priority = body.get("priority", 0)
        record.priority = priority if isinstance(priority, int) else 0
        record.messages = redacted(messages)
        record.image_sha256 = image_sha256(image) if image is not None else None
        early = self._early_answer(config, record)
        if early is not None:
            record.status = early[0]
            return early
        try:
            record.started = time.time()
            self._gate.wait()
            if config.latency:
                time.sleep(config.latency)
            code, payload = 200, self._answer(config, record, messages, image)
        finally:
            self.engine.release()
            record.finished = time.time()
        record.status = code
        return code, payload

    def _early_answer(self, config: StandinConfig,
                      record: RequestRecord) -> tuple[int, dict[str, Any]] | None:
        """An error before generation: unknown model, a forced failure, or overload.
        None means a slot is now held."""
        if record.model != config.model:
            return 404, _error(f"The model `{record.model}` does not exist.",
                               "NotFoundError", 404)
        with self._lock:
            fail = self._failed < config.fail_first
            self._failed += fail
        if fail:
            return config.fail_status, _error("forced failure (stand-in --fail-first)",
                                              "ServiceUnavailableError", config.fail_status)
        if not self.engine.admit(record.priority):
            return config.overload_status, _error(
                "The server is overloaded: the request queue is full.",
                "OverloadedError", config.overload_status)
        return None

    def _answer(self, config: StandinConfig, record: RequestRecord,
                messages: list[dict[str, Any]], image: bytes | None) -> dict[str, Any]:
        text = reply_text(config, messages, image)
        cap = record.max_tokens if isinstance(record.max_tokens, int) else config.max_model_len
        words = word_count(text)
        finish = "stop"
        if words > cap:
            text, words, finish = cut_to(text, cap), cap, "length"
        record.completion_tokens, record.finish_reason = words, finish
        prompt_tokens = sum(word_count(_text_of(m.get("content"))) for m in messages) + \
            (270 if image is not None else 0)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": config.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "reasoning_content": None, "tool_calls": []},
                         "logprobs": None, "finish_reason": finish, "stop_reason": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": words,
                      "total_tokens": prompt_tokens + words},
        }


def reply_text(config: StandinConfig, messages: Sequence[dict[str, Any]],
               image: bytes | None) -> str:
    """What the model would say: the refusal for no image, a refused image or an off-topic
    first prompt; otherwise the findings, the report or a follow-up answer."""
    first = next((m for m in messages if m.get("role") == "user"), {})
    sha = image_sha256(image) if image is not None else None
    if sha is None or sha in config.refuse_sha256 or \
            not _ON_TOPIC.search(_text_of(first.get("content"))):
        return REFUSAL
    labels = labels_for(sha, config.labels)
    turn = turn_of(messages)
    if turn == "findings":
        return findings_text(labels)
    if turn == "report":
        return report_text(labels)
    return followup_text(labels)


# -- as a peer process ----------------------------------------------------------------------

class StandinProcess:
    """The stand-in as a subprocess (what a test uses when the server must outlive, or be
    killed apart from, the test process); the same ``.url``/``.requests``/``.reset()``."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    @property
    def requests(self) -> list[RequestRecord]:
        return [RequestRecord.from_json(r) for r in self.state()["requests"]]

    @property
    def peak_concurrency(self) -> int:
        return int(self.state()["peak_concurrency"])

    @property
    def models_queries(self) -> int:
        return int(self.state()["models_queries"])

    def chat_requests(self, turn: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if turn is None or r.turn == turn]

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_standin/requests", timeout=30) as resp:
            state: dict[str, Any] = json.loads(resp.read())
            return state

    def reset(self, **changes: Any) -> None:
        self._post("/_standin/reset", changes)

    def hold(self) -> None:
        """As ``VLLMStandin.hold``: admitted sequences wait until ``release_held``."""
        self._post("/_standin/hold", {})

    def release_held(self) -> None:
        self._post("/_standin/release", {})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(f"{self.url}{path}", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_subprocess(*args: str) -> StandinProcess:
    """``python -m tests.vllm_standin --port 0 ARGS``, once it says where it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.vllm_standin", "--port", "0", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    match = re.fullmatch(r"listening (\S+):(\d+)", first)
    if match is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the stand-in did not start (said {first!r}, "
                           f"exit code {proc.poll()})")
    return StandinProcess(proc, f"http://{match.group(1)}:{match.group(2)}")


def parse_args(argv: Iterable[str] | None = None) -> tuple[StandinConfig, str, int]:
    p = argparse.ArgumentParser(prog="python -m tests.vllm_standin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--model", default=DEFAULT_MODEL_ID, help="served model name")
    p.add_argument("--root", default=None,
                   help="root reported by /v1/models (default: the model name; "
                        "'snapshot' = a local HF snapshot path with the pinned commit)")
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--capacity", type=int, default=256)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--queue-limit", type=int, default=None)
    p.add_argument("--scheduling-policy", default="fcfs", choices=("fcfs", "priority"))
    p.add_argument("--no-metrics", action="store_true", help="no GET /metrics")
    p.add_argument("--overload-status", type=int, default=429, choices=(429, 503))
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--labels", default=None, help="comma-separated labels for every image")
    p.add_argument("--refuse-sha256", action="append", default=[],
                   help="answer this image (sha256 of its bytes) with the refusal")
    a = p.parse_args(list(argv) if argv is not None else None)
    root = SNAPSHOT_ROOT if a.root == "snapshot" else (a.root or a.model)
    labels = tuple(s.strip() for s in a.labels.split(",")) if a.labels else None
    cfg = StandinConfig(model=a.model, root=root, max_model_len=a.max_model_len,
                        capacity=a.capacity, latency=a.latency, queue_limit=a.queue_limit,
                        scheduling=a.scheduling_policy, metrics=not a.no_metrics,
                        overload_status=a.overload_status, fail_first=a.fail_first,
                        fail_status=a.fail_status, labels=labels,
                        refuse_sha256=frozenset(a.refuse_sha256))
    return cfg, a.host, a.port


def main(argv: Iterable[str] | None = None) -> None:
    cfg, host, port = parse_args(argv)
    standin = VLLMStandin(cfg, host, port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    standin.start()
    print(f"listening {host}:{standin.port}", flush=True)
    stopped.wait()
    standin.stop()


if __name__ == "__main__":
    main()

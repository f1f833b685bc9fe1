"""vLLM's own load gauges, read from its Prometheus endpoint (``GET /metrics``).

``vllm:num_requests_running`` (sequences generating) and ``vllm:num_requests_waiting``
(requests queued for a slot) are what ``models.engine_window`` steers by when a server
publishes them; vLLM does by default.  Parsed with prometheus-client's own parser; the
body is capped (``MAX_BYTES``) because it comes from a server we do not control, and a
page without both gauges means "not a vLLM server": the window then steers by latency.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from models.engine_window import EngineLoad

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
MAX_BYTES = 1 << 20


def parse_load(text: str, model: str | None = None) -> EngineLoad | None:
    """The two gauges summed over the engines that publish them (vLLM labels each with
    ``model_name``; a sample for another model is another engine's load, not ours); None
    when the page lacks either, or is not Prometheus text."""
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name not in (RUNNING, WAITING):
                    continue
                served = sample.labels.get("model_name")
                if model is not None and served is not None and served != model:
                    continue
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    except (ValueError, TypeError, IndexError):
        return None
    if RUNNING not in totals or WAITING not in totals:
        return None
    return EngineLoad(running=totals[RUNNING], waiting=totals[WAITING])


async def read_load(client: httpx.AsyncClient, url: str, model: str,
                    timeout: float = 5.0) -> EngineLoad | None:
    """The engine's load now, or None (no such endpoint, no gauges, a page too big, the
    server unreachable: the caller steers by latency until a read succeeds)."""
    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                return None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    return None
    except httpx.HTTPError:
        return None
    return parse_load(body.decode("utf-8", errors="replace"), model)

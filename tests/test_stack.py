"""The compose stack in a real container engine (issue 35): ``scripts/stack up`` builds the
images from deploy/Dockerfile unchanged (scripts/images: stand-ins from Debian packages for
the base and service images no registry serves here) and runs docker-compose.yml under
podman, every service but Grafana.  A study stored into the stack's Orthanc is routed to the
gateway and its SR comes back into Orthanc; the gateway's health check turns healthy; the
gateway container killed while a job is in flight comes back on the same /data volume and
the job finishes, one SR, nothing lost; Prometheus scrapes the gateway inside the stack.

The stack publishes the compose file's fixed host ports (4242, 8042, 8080, 11112, 5555,
9090) and its project is ``cxr-stack``; a stack already up under that name is taken down
(with its volumes) first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest

from tests.dicom_factory import make_cr, save
from tests.peers import dicom_tool, sample_file, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "stack-operator-token-0123456789abcdefghij"
ORTHANC_AUTH = "Basic " + b64encode(b"admin:stack-orthanc-password").decode()
SECRETS = {"POSTGRES_PASSWORD": "stack-pg-password", "ORTHANC_PASSWORD":
           "stack-orthanc-password", "GRAFANA_ADMIN_PASSWORD": "unused-here",
           "CXR_API_TOKEN": TOKEN, "CXR_MOCK_LATENCY_SECONDS": "8"}
GATEWAY = "cxr-stack_gateway_1"


def _env() -> dict[str, str]:
    return {**os.environ, **SECRETS,
            "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf")}


def _stack(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "stack"), *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _podman(*args: str) -> str:
    done = subprocess.run(["podman", *args], env=_env(), capture_output=True, text=True,
                          timeout=120)
    return done.stdout.strip()


def _get(url: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _orthanc(path: str) -> Any:
    return _get(f"http://127.0.0.1:8042{path}", {"Authorization": ORTHANC_AUTH})


def _api(path: str) -> Any:
    return _get(f"http://127.0.0.1:8080{path}", {"Authorization": f"Bearer {TOKEN}"})


def _srs_in(study_uid: str) -> list[str]:
    """SOP Instance UIDs of the SRs Orthanc holds in the study."""
    found = _orthanc_find(study_uid)
    if not found:
        return []
    out = []
    for series in _orthanc(f"/studies/{found[0]}/series"):
        if series["MainDicomTags"].get("Modality") == "SR":
            out += [_orthanc(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"]
                    for i in series["Instances"]]
    return out


def _orthanc_find(study_uid: str) -> list[str]:
    body = json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).encode()
    request = urllib.request.Request("http://127.0.0.1:8042/tools/find", data=body, headers={
        "Authorization": ORTHANC_AUTH, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return list(json.loads(answer.read()))


def _store(path: Path) -> None:
    done = subprocess.run([dicom_tool("storescu"), "-aet", "MODALITY", "-aec", "ORTHANC",
                           "127.0.0.1", "4242", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def _job_state(study_uid: str) -> str | None:
    jobs = [j for j in _api("/api/jobs?limit=100") if j["study_instance_uid"] == study_uid]
    return jobs[0]["state"] if jobs else None


@pytest.fixture
def stack() -> Any:
    for tool in ("podman", "podman-compose", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/bootstrap test")
    _stack("down", "-v")
    up = _stack("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield up.stdout
    finally:
        logs = _podman("logs", "--tail", "40", GATEWAY)
        _stack("down", "-v")
        print(logs)


def test_the_stack_routes_a_study_through_orthanc_survives_a_kill_and_is_scraped(
        stack: str, tmp_path: Path) -> None:
    assert "gateway      healthy" in stack and "prometheus   healthy" in stack
    assert _podman("inspect", "--format", "{{.State.Health.Status}}", GATEWAY) == "healthy"
    rg1 = sample_file("RG1_UNCR.dcm")
    from pydicom import dcmread

    first = str(dcmread(rg1, stop_before_pixels=True).StudyInstanceUID)
    _store(rg1)
    (sr,) = wait_until(lambda: _srs_in(first) or None, "the SR of RG1 back in Orthanc",
                       timeout=300)
    # a job in flight when the gateway container is killed finishes once it is back
    late = make_cr(size=64, seed=35)
    _store(save(late, tmp_path / "late.dcm"))
    second = str(late.StudyInstanceUID)
    wait_until(lambda: _job_state(second) in ("prepared", "inferring"),
               "the second study's job waiting on the GPU worker", timeout=300)
    _podman("kill", GATEWAY)
    wait_until(lambda: _podman("inspect", "--format", "{{.State.Status}}", GATEWAY) != "running",
               "the gateway container down", timeout=60)
    if _podman("inspect", "--format", "{{.State.Status}}", GATEWAY) != "running":
        _podman("start", GATEWAY)  # (restart: unless-stopped may have done it already)
    wait_until(lambda: subprocess.run(["podman", "healthcheck", "run", GATEWAY], env=_env(),
                                      capture_output=True).returncode == 0,
               "the restarted gateway healthy", timeout=300)
    late_srs = wait_until(lambda: _srs_in(second) or None, "the in-flight study's SR",
                          timeout=300)
    assert len(late_srs) == 1  # once, not again after the restart
    assert _srs_in(first) == [sr]  # the first study's SR was not sent a second time
    kept = _api(f"/api/studies/{first}")  # the database and /data outlived the container
    assert kept["study_instance_uid"] == first
    assert _podman("exec", GATEWAY, "sh", "-c", "ls /data/spool | head -1")
    # Prometheus (scraping every 15 s) has the gateway's metrics from inside the stack
    url = "http://127.0.0.1:9090/api/v1/query?query=" + urllib.request.quote(
        'cxr_jobs{job="cxr-gateway",state="done"}')

    def scraped_done() -> float | None:
        result = _get(url, {})["data"]["result"]
        return float(result[0]["value"][1]) if result and float(
            result[0]["value"][1]) >= 2 else None

    assert wait_until(scraped_done, "Prometheus scraping both done jobs", timeout=120) >= 2

"""Deployment: the compose file validated by a real Compose implementation, the images'
install steps, and the compose topology run as processes with 50 studies from Orthanc."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydicom.uid import generate_uid

from tests.dicom_factory import make_cr
from tests.peers import (
    BIN,
    ROOT,
    Orthanc,
    RedisServer,
    free_port,
    fresh_database,
    require_tool,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.integration
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = {"redis", "postgres", "orthanc", "gateway", "gpu-worker", "flower", "prometheus",
            "grafana"}


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "POSTGRES_"))}
    return subprocess.run([require_tool("docker-compose"), "-f", str(COMPOSE), "--env-file",
                           str(env_file), "config"], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    out = compose_config(ENV_EXAMPLE)
    assert out.returncode == 0, out.stderr
    parsed: dict[str, Any] = yaml.safe_load(out.stdout)
    return parsed


def test_compose_file_is_valid_and_complete(config: dict[str, Any], tmp_path: Path) -> None:
    from worker.cli import build_parser

    services = config["services"]
    assert set(services) == SERVICES
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore
    mounted: set[str] = set()
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        if "build" in svc:  # our own image: its command must be one of ours
            assert svc["command"][0] in commands, (name, svc["command"])
            dockerfile = Path(svc["build"]["context"]) / svc["build"]["dockerfile"]
            assert dockerfile.is_file(), dockerfile
        for volume in svc.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if str(source).startswith(str(ROOT)):  # a file of ours, mounted into the service
                assert Path(source).exists(), f"{name} mounts a missing {source}"
                mounted.add(str(Path(source).relative_to(ROOT)))
    assert {"deploy/prometheus.yml", "deploy/orthanc/orthanc.json",
            "deploy/orthanc/route-chest.lua", "deploy/grafana/provisioning",
            "deploy/grafana/dashboards"} <= mounted, mounted
    for name in ("gateway", "gpu-worker"):
        deps = services[name]["depends_on"]
        assert deps["redis"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
    assert services["gpu-worker"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    gpu = services["gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == "all"  # one container, all GPUs
    assert "--per-device" in gpu["command"]  # ... and a worker process pinned to each
    mounts = [v if isinstance(v, dict) else dict(zip(("source", "target", "mode"),
                                                     v.split(":"), strict=False))
              for v in gpu["volumes"]]
    assert any(m.get("target") == "/models" and (m.get("read_only") or m.get("mode") == "ro")
               for m in mounts), mounts
    assert "8080" in (ROOT / "deploy" / "prometheus.yml").read_text()
    # no secret is written in the file: each comes from .env, and is required there
    raw = COMPOSE.read_text()
    for line in raw.splitlines():
        if re.search(r"(PASSWORD|TOKEN)\w*\s*:", line) and "${" not in line:
            pytest.fail(f"a secret written into docker-compose.yml: {line.strip()}")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = compose_config(empty)
    assert missing.returncode != 0 and "set POSTGRES_PASSWORD" in missing.stderr


def image_install(dockerfile: Path) -> tuple[list[str], str]:
    """The requirements a Dockerfile's pip install of this project names (its declared
    dependencies and those of its extras), and the constraints file it installs with."""
    text = dockerfile.read_text()
    ((constraints, extras),) = re.findall(
        r'pip install [^\n]*-c (\S+) "\.(?:\[([\w,]*)\])?"', text)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in filter(None, extras.split(",")):
        reqs += project["optional-dependencies"][extra]
    return reqs, constraints


Metadata = Callable[[str], "importlib.metadata.Distribution"]


def dependency_closure(requirements: list[str],
                       metadata: Metadata = importlib.metadata.distribution
                       ) -> dict[str, str]:
    """Every distribution ``requirements`` pull in, transitively (extras and environment
    markers evaluated as pip does), by normalised name, with its version: read from the
    installed packages' own metadata, so a dependency that pulls in another through its
    own requirements is found."""
    found: dict[str, str] = {}
    done: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        dist = metadata(name)
        found[name] = dist.version
        for extra in {""} | {canonicalize_name(e) for e in req.extras}:
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for text in dist.requires or []:
                sub = Requirement(text)
                wanted = sub.marker.evaluate({"extra": extra}) if sub.marker else not extra
                if wanted:
                    todo.append(Requirement(str(sub).split(";")[0]))
    return found


MODEL_STACK = ("torch", "torchvision", "transformers", "accelerate", "triton")


def model_stack(names: set[str] | dict[str, str]) -> set[str]:
    return {n for n in names if n in MODEL_STACK or n.startswith(("nvidia-", "cuda-"))}


def pinned(constraints: Path) -> dict[str, str]:
    lines = [ln.strip() for ln in constraints.read_text().splitlines()]
    pins = dict(ln.split("==", 1) for ln in lines if ln and not ln.startswith("#"))
    return {canonicalize_name(n): v for n, v in pins.items()}


def test_the_dependency_closure_finds_torch_pulled_in_by_another_package() -> None:
    """What the image test below would miss with a name match on pyproject.toml alone."""
    fake = {"gateway-dep": ["helper>=1", "extra-only; extra == 'gpu'"],
            "helper": ["Torch>=2; python_version >= '3'"],
            "torch": ["nvidia-cublas"], "nvidia-cublas": [], "extra-only": []}

    class Dist:
        def __init__(self, name: str) -> None:
            self.version, self.requires = "1.0", fake[name]

    closure = dependency_closure(["gateway-dep"], Dist)  # type: ignore[arg-type]
    assert set(closure) == {"gateway-dep", "helper", "torch", "nvidia-cublas"}
    assert model_stack(closure) == {"torch", "nvidia-cublas"}
    assert set(dependency_closure(["gateway-dep[gpu]"], Dist)) == set(closure) | {  # type: ignore[arg-type]
        "extra-only"}


def test_the_gateway_image_installs_no_torch() -> None:
    """The gateway image's install, resolved from the installed packages' metadata (the
    versions the constraints file pins, so the same resolution pip makes in the image):
    no model stack anywhere in it, whichever package would pull it in; the GPU image's
    has it; both install every package at the version pinned."""
    gateway_reqs, constraints = image_install(ROOT / "deploy" / "Dockerfile")
    gpu_reqs, gpu_constraints = image_install(ROOT / "deploy" / "Dockerfile.gpu")
    assert constraints == gpu_constraints == "deploy/constraints.txt"
    pins = pinned(ROOT / constraints)
    gateway = dependency_closure(gateway_reqs)
    assert not model_stack(gateway), model_stack(gateway)
    assert {"pydicom", "pynetdicom", "celery", "fastapi", "psycopg", "psycopg-binary"} <= \
        set(gateway)
    gpu = dependency_closure(gpu_reqs)
    assert {"torch", "torchvision", "transformers"} <= set(gpu)
    for closure in (gateway, gpu):
        assert {n: pins.get(n) for n in closure} == closure, "scripts/lock is due"
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / "deploy" / dockerfile).read_text()
        assert re.search(r"^USER (?!root)\w+", text, re.M), f"{dockerfile} runs as root"
        copied = [source for line in re.findall(r"^COPY (.+) \S+$", text, re.M)
                  for source in line.split()]
        for source in copied:  # only our own files
            assert (ROOT / source).exists(), (dockerfile, source)
        assert constraints in copied, f"{dockerfile} does not copy {constraints}"


def _service_env(svc: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (svc.get("environment") or {}).items()}


@pytest.mark.timeout(600)
def test_the_compose_topology_as_processes(config: dict[str, Any], tmp_path: Path) -> None:
    """Orthanc, the gateway, two GPU workers, Redis and PostgreSQL, each started with the
    compose file's command and environment; only addresses (service names become loopback
    ports), folders, and the model backend (no weights or GPU here: mock) differ."""
    services = config["services"]
    redis_args = services["redis"]["command"][1:]
    redis = RedisServer(tmp_path, extra=redis_args).start()
    db_url, drop = fresh_database()
    gateway_port, api_port = free_port(), free_port()
    orthanc_cfg = json.loads((ROOT / "deploy" / "orthanc" / "orthanc.json").read_text())
    orthanc_cfg["DicomModalities"]["gateway"].update(Host="127.0.0.1", Port=gateway_port)
    orthanc_cfg["LuaScripts"] = [str(ROOT / "deploy" / "orthanc" / "route-chest.lua")]
    orthanc_cfg["RegisteredUsers"] = {"admin": "pw"}
    orthanc = Orthanc(tmp_path, config=orthanc_cfg, user=("admin", "pw"))
    compose_db = urlsplit(_service_env(services["gateway"])["CXR_DATABASE_URL"])
    assert compose_db.hostname == "postgres"

    def env_for(name: str) -> dict[str, str]:
        env = _service_env(services[name])
        env.update(CXR_BROKER_URL=redis.url, CXR_DATABASE_URL=db_url,
                   CXR_DATA_DIR=str(tmp_path / name))
        if name == "gateway":
            assert env["CXR_DESTINATIONS"] == "ORTHANC@orthanc:4242"
            env.update(CXR_PORT=str(gateway_port), CXR_API_PORT=str(api_port),
                       CXR_DESTINATIONS=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
                       CXR_HOST="127.0.0.1", CXR_API_HOST="127.0.0.1")
        else:
            assert env["CXR_MODEL_BACKEND"] == "local"
            env.update(CXR_MODEL_BACKEND="mock", HF_HOME=str(tmp_path / "models"),
                       CUDA_VISIBLE_DEVICES="0,1")  # two GPUs, one worker process each
        base = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
        return {**base, **env}

    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (tmp_path / "gateway.log").open("ab") as log:
            procs.append(subprocess.Popen([str(BIN / "cxr-gateway"),
                                           *services["gateway"]["command"]],
                                          env=env_for("gateway"), stdout=log, stderr=log))
        wait_for_port(gateway_port, timeout=60)
        with (tmp_path / "gpu-worker.log").open("ab") as log:  # the one gpu-worker container
            procs.append(subprocess.Popen([str(BIN / "cxr-gateway"),
                                           *services["gpu-worker"]["command"]],
                                          env=env_for("gpu-worker"), stdout=log, stderr=log))
        study_uids = []
        for i in range(50):
            ds = make_cr(generate_uid(), size=64, seed=i)
            study_uids.append(str(ds.StudyInstanceUID))
            path = tmp_path / "in" / f"{i}.dcm"
            path.parent.mkdir(exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            orthanc.rest("POST", "/instances", path.read_bytes())  # Lua routes it on
        deadline = time.monotonic() + 300
        srs: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            found = orthanc.rest("POST", "/tools/find", json.dumps(
                {"Level": "Instance", "Query": {"Modality": "SR"}, "Expand": True}).encode())
            assert isinstance(found, list)
            srs = {}
            for inst in found:
                tags = orthanc.rest("GET", f"/instances/{inst['ID']}/simplified-tags")
                assert isinstance(tags, dict)
                srs.setdefault(tags["StudyInstanceUID"], []).append(tags["SOPInstanceUID"])
            if len(srs) >= 50:
                break
            time.sleep(3)
        assert sorted(srs) == sorted(study_uids), f"{len(srs)} of 50 SRs back in Orthanc"
        assert all(len(v) == 1 for v in srs.values())
        health = subprocess.run([str(BIN / "cxr-gateway"), "health"], env=env_for("gateway"),
                                capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stderr
    finally:
        for p in procs:
            stop_process(p)
        orthanc.stop()
        redis.stop()
        drop()

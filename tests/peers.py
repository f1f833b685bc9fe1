"""Real peers for tests: dcmtk storescp, `cxr-gateway serve` subprocesses, helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def sample_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path, f"{name} missing: install pydicom-data"
    return Path(str(path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/bootstrap (installs dcmtk, dicom3tools)")
    return path


def dicom_tool(name: str) -> str:
    """A dcmtk or dicom3tools program from /usr/bin: pynetdicom installs Python scripts of
    the same names (storescu, storescp, echoscu) into the venv, which must not stand in."""
    path = require_tool(name)
    resolved = Path(path).resolve()
    assert not str(resolved).startswith(str(BIN.resolve().parent)), \
        f"{name} resolves to {resolved}, not the Debian package's program"
    return path


def dciodvfy_errors(path: Path, iod: str = "SR") -> list[str]:
    """dicom3tools' verdict on a file: its Error lines (empty when clean).

    Checked so that a verifier that did not run cannot look like a clean result: the
    output must name the IOD it recognised, and the exit code must agree with the
    Error lines (0 exactly when there are none).
    """
    out = subprocess.run([dicom_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert text.strip(), f"dciodvfy printed nothing for {path}"
    assert iod in text, f"dciodvfy did not recognise {path} as {iod}:\n{text}"
    errors = [ln for ln in text.splitlines() if ln.startswith("Error")]
    assert (out.returncode == 0) == (not errors), f"dciodvfy rc {out.returncode}:\n{text}"
    return errors


PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")  # Debian's pixelmed-apps (libpixelmed-java)
# The validator's XSLT passes the XPath limits JDK 17 sets by default (it stops with
# "JAXP0801003 ... exceeds the '10,000' limit"): lifted as IHE's own instructions say.
_PIXELMED_JAVA = ("-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0",
                  "-Djdk.xml.xpathTotalOpLimit=0")


def pixelmed_verdict(path: Path) -> tuple[list[str], list[str]]:
    """Pixelmed's ``DicomSRValidator`` (what IHE's Gazelle EVS runs) on an SR: its Error
    and Warning lines.

    The validator exits 0 even when it reports errors, so the verdict is read from its
    output, and checked so that a validator that did not run (a Java exception, an
    unrecognised file) cannot look like a clean result.
    """
    require_tool("java")
    assert PIXELMED_JAR.is_file(), "install pixelmed-apps (scripts/bootstrap does)"
    out = subprocess.run(["java", *_PIXELMED_JAVA, "-cp", str(PIXELMED_JAR),
                          "com.pixelmed.validate.DicomSRValidator", str(path)],
                         capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"DicomSRValidator rc {out.returncode}:\n{text}"
    assert "Exception" not in text, f"DicomSRValidator failed on {path}:\n{text}"
    for stage in ("Found Root Template", "Root Template Validation Complete",
                  "IOD validation complete"):
        assert stage in text, f"DicomSRValidator did not reach {stage!r} on {path}:\n{text}"
    lines = text.splitlines()
    return ([ln for ln in lines if ln.startswith("Error")],
            [ln for ln in lines if ln.startswith("Warning")])


def pixelmed_errors(path: Path) -> list[str]:
    """Pixelmed's Error lines for an SR (empty when IHE's test would pass it)."""
    return pixelmed_verdict(path)[0]


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
    """Poll ``check`` until it returns something truthy (returned); a generous cap, then
    an AssertionError naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def wait_for_port(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


class StoreSCP:
    """dcmtk storescp as the destination PACS."""

    def __init__(self, root: Path, ae_title: str = "DESTPACS", port: int | None = None) -> None:
        self.dir = root / "storescp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ae_title = ae_title
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [dicom_tool("storescp"), "--output-directory", str(self.dir), "-aet", ae_title,
             "--unique-filenames",
             "--accept-all", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def files(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.is_file())

    def delivered_uids(self) -> list[str]:
        """The SOP Instance UID of every delivery: storescp keeps each one in its own file
        (``--unique-filenames``), so a duplicate delivery shows as a repeated UID."""
        from pydicom import dcmread

        return sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                      for p in self.files())

    def wait_files(self, count: int, timeout: float = 180.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.files()
            if len(files) >= count:
                time.sleep(0.3)  # let storescp finish writing
                return self.files()
            time.sleep(0.2)
        raise TimeoutError(f"storescp received {len(self.files())} file(s), wanted {count}")

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


class BlackHole:
    """A TCP peer that accepts connections and never answers: a hung PACS."""

    def __init__(self, port: int | None = None) -> None:
        import threading

        self.port = port or free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        for c in [*self.connections, self.server]:
            c.close()


class HoldingProxy:
    """A TCP relay to ``port`` that passes the first ``limit`` bytes a client sends, then
    holds the rest: the peer behind it is left mid-transfer for as long as a test wants
    (a kill then lands inside an association, whatever the machine's speed)."""

    def __init__(self, port: int, limit: int) -> None:
        import threading

        self.target, self.limit = port, limit
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        self.held = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        try:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            return
        self.sockets += [client, upstream]
        threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()
        self._pipe(client, upstream, self.limit)

    def _pipe(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        passed = 0
        with contextlib.suppress(OSError):
            while limit is None or passed < limit:
                data = src.recv(min(65536, limit - passed) if limit is not None else 65536)
                if not data:
                    return
                dst.sendall(data)
                passed += len(data)
            self.held.set()  # the rest is never passed on

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def child_pids(pid: int) -> list[int]:
    """Child processes of ``pid``, from /proc (every thread's children file)."""
    pids: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                pids += [int(c) for c in (task / "children").read_text().split()]
    return sorted(set(pids))


BACKENDS = ("mock", "openai", "local")


def backend_env(name: str, standin_url: str = "", checkpoint: Path | None = None
                ) -> dict[str, str]:
    """The environment that puts ``serve`` or a worker on one model backend, as a site would:
    ``mock``; ``openai`` against a vLLM server (here the stand-in at ``standin_url``);
    ``local`` Transformers on a checkpoint directory (here a tiny Qwen, on the CPU)."""
    if name == "mock":
        return {"CXR_MODEL_BACKEND": "mock"}
    if name == "openai":
        assert standin_url, "the openai backend needs the stand-in's URL"
        return {"CXR_MODEL_BACKEND": "openai", "CXR_OPENAI_URL": standin_url}
    if name == "local":
        assert checkpoint is not None, "the local backend needs a checkpoint directory"
        return {"CXR_MODEL_BACKEND": "local", "CXR_MODEL_ID": str(checkpoint),
                "CXR_ALLOW_CPU": "1", "CXR_DEVICE": "cpu", "CXR_LOCAL_FILES_ONLY": "1"}
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")


class SlowModel:
    """A backend slow enough (``latency`` seconds a generation) for a kill to land while a
    generation runs: the mock sleeping, or the vLLM stand-in holding each request."""

    def __init__(self, name: str, latency: float, request: pytest.FixtureRequest) -> None:
        self.name = name
        self.standin: Any = None
        if name == "mock":
            self.env = {**backend_env("mock"), "CXR_MOCK_LATENCY_SECONDS": str(latency)}
        else:
            self.standin = request.getfixturevalue("vllm_standin")
            self.standin.reset(latency=latency)
            self.env = backend_env(name, standin_url=self.standin.url)

    def in_flight(self) -> list[Any]:
        """Stand-in requests that started generating and have not finished."""
        if self.standin is None:
            return []
        return [r for r in self.standin.requests if r.started and r.finished is None]

    def wait_in_flight(self, timeout: float = 120.0) -> list[Any]:
        """For the stand-in, wait until a request is being generated (and return them):
        the job's state says inferring a moment before the request leaves the worker."""
        if self.standin is None:
            return []
        deadline = time.monotonic() + timeout
        while not self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.02)
        held = self.in_flight()
        assert held, "no request reached the stand-in"
        return held

    def turns(self) -> list[tuple[str | None, str, int]]:
        """(image sha256, turn, HTTP status) of every request the stand-in answered."""
        if self.standin is None:
            return []
        return [(r.image_sha256, r.turn, r.status) for r in self.standin.requests]


class Serve:
    """``cxr-gateway serve`` as a real subprocess on the embedded default."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.api_port = free_port()
        self.env = {**os.environ, "CXR_DATA_DIR": str(data_dir), "CXR_PORT": str(self.port),
                    "CXR_API_PORT": str(self.api_port), "CXR_STUDY_QUIET_SECONDS": "1",
                    "CXR_POLL_SECONDS": "0.2", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "serve.log"

    def start(self, *extra: str) -> Serve:
        """Start serve; return once it says it serves (the port opens a little earlier).

        A port from ``free_port`` can be taken by another process before serve binds it
        (two suites on one machine): then serve exits saying so, and it is started again
        on fresh ports, rather than the test talking to whoever holds the old one."""
        for _ in range(3):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            started = self._serving_lines()
            mark = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as fh:
                self.proc = subprocess.Popen([str(BIN / "cxr-gateway"), "serve", *extra],
                                             env=self.env, stdout=fh, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 180  # generous: CI may run on a busy machine
            while self._serving_lines() == started and self.proc.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            if self._serving_lines() > started and self.proc.poll() is None:
                wait_for_port(self.port)
                return self
            said = self.log.read_bytes()[mark:].decode(errors="replace")
            if self.proc.poll() is not None and "in use" in said.lower():
                self.port, self.api_port = free_port(), free_port()
                self.env.update(CXR_PORT=str(self.port), CXR_API_PORT=str(self.api_port))
                continue
            break
        said = self.log.read_bytes()[mark:].decode(errors="replace")
        raise AssertionError(f"serve did not start (exit {self.proc.poll()}): {said[-2000:]}")

    def _serving_lines(self) -> int:
        return self.log.read_text(errors="replace").count("cxr-gateway serving") \
            if self.log.exists() else 0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def children(self) -> list[int]:
        """The serve process's child processes (its listener processes, when it has them)."""
        assert self.proc is not None
        return child_pids(self.proc.pid)

    def listener_processes(self) -> list[int]:
        """The children that run listeners (multiprocessing also starts a resource tracker)."""
        return [pid for pid in self.children()
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def kill_all(self) -> None:
        """SIGKILL serve and its children at once, as a machine crash would end them."""
        assert self.proc is not None
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.kill()

    def stop(self) -> None:
        stop_process(self.proc)

    def storescu(self, *files: Path, calling: str = "TESTSCU",
                 extra: tuple[str, ...] = (), port: int | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [dicom_tool("storescu"), "-aet", calling, "-aec", "CXRGATEWAY", *extra,
             "127.0.0.1", str(port or self.port), *map(str, files)],
            capture_output=True, text=True, timeout=120,
        )




class Orthanc:
    """A real Orthanc (Debian package) on loopback ports, with the DICOMweb plugin."""

    DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

    def __init__(self, root: Path, gateway_port: int | None = None,
                 allow_any_store: bool = True, config: dict[str, object] | None = None,
                 user: tuple[str, str] | None = None) -> None:
        """``config``: a site's own configuration, used as it is but for folders and
        ports (which this test run chooses) and the DICOMweb plugin's Debian path."""
        import json as _json

        self.root = root / "orthanc"
        self.root.mkdir(parents=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.user = user
        if config is not None:
            config = {**config, "StorageDirectory": str(self.root / "db"),
                      "IndexDirectory": str(self.root / "db"), "HttpPort": self.http_port,
                      "DicomPort": self.dicom_port, "RemoteAccessAllowed": False,
                      "HttpProxy": "", "Plugins": [self.DICOMWEB_PLUGIN]}
        else:
            config = {
                "Name": "cxr-test", "StorageDirectory": str(self.root / "db"),
                "IndexDirectory": str(self.root / "db"), "HttpPort": self.http_port,
                "DicomPort": self.dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False, "DicomAlwaysAllowStore": allow_any_store,
                "DicomAlwaysAllowEcho": allow_any_store, "HttpProxy": "", "StableAge": 1,
                "DicomModalities": ({"gateway": ["CXRGATEWAY", "127.0.0.1", gateway_port]}
                                    if gateway_port else {}),
                "Plugins": [self.DICOMWEB_PLUGIN],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            }
        (self.root / "orthanc.json").write_text(_json.dumps(config))
        self.log = self.root / "orthanc.log"
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen([require_tool("Orthanc"), str(self.root / "orthanc.json")],
                                         stdout=fh, stderr=subprocess.STDOUT)
        wait_for_port(self.http_port)
        wait_for_port(self.dicom_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, method: str, path: str, body: bytes | None = None) -> object:
        import json as _json
        import urllib.request

        req = urllib.request.Request(self.url + path, data=body, method=method)
        if self.user is not None:
            import base64

            token = base64.b64encode(":".join(self.user).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = resp.read()
        return _json.loads(data) if data else None

    def instances_in_study(self, study_uid: str) -> list[dict[str, str]]:
        out = []
        for iid in self.rest("GET", "/instances"):  # type: ignore[union-attr]
            tags = self.rest("GET", f"/instances/{iid}/simplified-tags")
            assert isinstance(tags, dict)
            if tags.get("StudyInstanceUID") == study_uid:
                out.append(tags)
        return out

    def wait_for_sr(self, study_uid: str, count: int = 1, timeout: float = 180.0
                    ) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srs = [t for t in self.instances_in_study(study_uid) if t.get("Modality") == "SR"]
            if len(srs) >= count:
                return srs
            time.sleep(0.5)
        raise TimeoutError(f"Orthanc holds no {count} SR(s) for study {study_uid}")

    def stop(self) -> None:
        stop_process(self.proc)


class RedisServer:
    """A private redis-server on a free loopback port (restartable, no persistence)."""

    def __init__(self, root: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.root = root
        self.extra = extra or []  # e.g. the compose file's own options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [require_tool("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.root), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    stop = kill


class PostgresCluster:
    """A private PostgreSQL cluster (initdb as user postgres) that a test may stop."""

    def __init__(self, root: Path) -> None:
        import glob

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.fail("PostgreSQL server binaries not found (Debian postgresql)")
        self.bin = Path(bins[-1])
        import tempfile

        # pytest's folders are private to root; the server runs as user postgres
        self.root = Path(tempfile.mkdtemp(prefix="cxr-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "pgdata"
        self.log = self.root / "pg.log"
        self.port = free_port()
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "postgres")

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       capture_output=True, cwd="/tmp")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresCluster:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-o", f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1",
                          "-w", "start")
        return self

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def fresh_database(admin_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
                   ) -> tuple[str, Callable[[], None]]:
    """A new, empty database on the machine's PostgreSQL; returns its URL and a dropper."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"cxr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


class Worker:
    """``cxr-gateway worker`` as a real process."""

    def __init__(self, env: dict[str, str], log: Path, name: str,
                 queues: str = "cpu,gpu") -> None:
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [str(BIN / "cxr-gateway"), "worker", "--queues", queues,
                 *(["--hostname", name if "@" in name else f"{name}@test"] if name else [])],
                env=env, stdout=fh, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc)

"""One GPU-queue worker process per visible GPU, each pinned to its own device.

Replicas of a compose service with ``count: 1`` all get the same GPU (docker/compose
issue 11863, NVIDIA/nvidia-container-toolkit issue 521), so "scale the service to N"
does not use N GPUs.  Instead one container is given every GPU and ``cxr-gateway worker
--queues gpu --per-device`` starts one child ``worker`` per device, each with
``CUDA_VISIBLE_DEVICES`` set to that one device and ``CXR_DEVICE=cuda:0`` (the only
device it sees): a model per GPU, a Celery consumer per GPU, a heartbeat per process.

Which devices are visible, in the order CUDA itself decides it:

1. ``CUDA_VISIBLE_DEVICES`` when set: its entries as CUDA reads them (indices, ``GPU-``
   or ``MIG-`` UUIDs; an empty value hides every GPU; CUDA ignores everything from the
   first entry it cannot read, so do we).
2. else ``NVIDIA_VISIBLE_DEVICES`` (what the container toolkit was told): ``none``,
   ``void`` or empty mean no GPU; UUIDs are global and passed on as they are; indices
   name host GPUs, which inside the container CUDA numbers from 0, so N indices become
   ``0 .. N-1``; ``all`` (the CUDA images' default) means ask the hardware.
3. the hardware: ``nvidia-smi -L`` (MIG instances by their UUID where a GPU is split:
   one CUDA process can use only one MIG instance, so each gets its own process), else
   ``torch.cuda.device_count()``.

The supervisor restarts a child that dies (after a growing pause, so a child that fails
at once does not spin), forwards SIGTERM and SIGINT to every child, and gives up with
exit status 2 when a child reports a start-up mistake (exit status 2: a setting to fix,
which a restart cannot).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

NO_DEVICES = ("", "none", "void")
_UUID = re.compile(r"\(UUID: ((?:GPU|MIG)-[^)\s]+)\)")
_INDEX = re.compile(r"\d+")
CONFIG_ERROR = 2  # what `cxr-gateway worker` exits with on a start-up mistake
RESTART_PAUSE = (1.0, 60.0)  # first and longest pause before starting a dead child again
STEADY_SECONDS = 60.0  # a child that ran this long starts again without a pause


class DeviceError(ValueError):
    """The visible devices cannot be mapped to one process each; the message says why."""


def parse_cuda_visible(value: str) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it: entries up to the first it cannot use
    (a negative or malformed index, a repeat), so ``0,1,-1,2`` is ``0,1``."""
    devices: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        usable = bool(_INDEX.fullmatch(entry)) or entry.startswith(("GPU-", "MIG-"))
        if not usable or entry in devices:
            break
        devices.append(entry)
    return devices


def parse_nvidia_visible(value: str) -> list[str] | None:
    """``NVIDIA_VISIBLE_DEVICES`` as the devices this container's CUDA sees; None for
    ``all`` (ask the hardware)."""
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if value.strip().lower() in NO_DEVICES:
        return []
    if any(e.lower() == "all" for e in entries):
        return None
    mig_by_index = [e for e in entries if ":" in e]
    if mig_by_index:
        raise DeviceError(f"NVIDIA_VISIBLE_DEVICES names MIG devices by index "
                          f"({', '.join(mig_by_index)}); name them by UUID (nvidia-smi -L) "
                          "so that each process can be given its own")
    uuids = [e for e in entries if e.startswith(("GPU-", "MIG-"))]
    if uuids and len(uuids) != len(entries):
        raise DeviceError("NVIDIA_VISIBLE_DEVICES mixes indices and UUIDs; use one kind")
    if uuids:
        return list(dict.fromkeys(uuids))
    return [str(i) for i in range(len(dict.fromkeys(entries)))]  # renumbered from 0


def parse_nvidia_smi(listing: str) -> list[str]:
    """The devices in ``nvidia-smi -L`` output: each GPU's UUID, or, for a GPU split
    into MIG instances, each instance's UUID instead."""
    devices: list[str] = []
    gpu: str | None = None
    migs: list[str] = []
    for line in listing.splitlines():
        found = _UUID.search(line)
        if found is None:
            continue
        if line.lstrip().startswith("MIG"):
            migs.append(found.group(1))
            continue
        if gpu is not None:
            devices += migs or [gpu]
        gpu, migs = found.group(1), []
    if gpu is not None:
        devices += migs or [gpu]
    return devices


def probe_hardware() -> list[str]:
    """The GPUs the driver shows (nvidia-smi), else how many torch counts, else none."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return parse_nvidia_smi(out.stdout)
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def visible_devices(env: Mapping[str, str],
                    probe: Callable[[], list[str]] = probe_hardware) -> list[str]:
    """Each entry: what one child's ``CUDA_VISIBLE_DEVICES`` is set to."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return parse_cuda_visible(env["CUDA_VISIBLE_DEVICES"])
    if "NVIDIA_VISIBLE_DEVICES" in env:
        listed = parse_nvidia_visible(env["NVIDIA_VISIBLE_DEVICES"])
        if listed is not None:
            return listed
    return probe()


def check_device_setting(device: str) -> None:
    """Per-device mode decides the device itself; a setting naming another one is a
    contradiction, not something to override quietly."""
    if device not in ("auto", "cuda", "cuda:0"):
        raise DeviceError(f"--per-device gives each process one GPU as cuda:0, but "
                          f"CXR_DEVICE is {device!r}; unset it (or set auto)")


def child_env(env: Mapping[str, str], device: str) -> dict[str, str]:
    return {**env, "CUDA_VISIBLE_DEVICES": device, "CXR_DEVICE": "cuda:0"}


def child_hostname(template: str | None, index: int) -> str:
    """A per-process worker name that says which GPU it has: ``worker-gpu1-<pid>@host``,
    or the given ``name@host`` as ``name-gpu1-<pid>@host`` (``%p``: the child's pid, so a
    restarted child is a new process to the reconciler, never a revived holder)."""
    name, _, host = (template or "worker@%h").partition("@")
    return f"{name or 'worker'}-gpu{index}-%p@{host or '%h'}"


@dataclass
class Child:
    index: int
    device: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = RESTART_PAUSE[0]
    due: float = 0.0  # when a dead child may start again
    restarts: int = 0


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL), so
    that no GPU worker serves on without it (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class DeviceSupervisor:
    """Starts ``argv(index)`` once per device and keeps each one running until stopped."""

    devices: Sequence[str]
    argv: Callable[[int], list[str]]
    env: Mapping[str, str]
    grace: float = 10.0
    children: list[Child] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.children = [Child(i, d) for i, d in enumerate(self.devices)]
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(self.argv(child.index),
                                      env=child_env(self.env, child.device),
                                      preexec_fn=_die_with_parent)
        child.started = time.monotonic()
        log.info("GPU worker %d (CUDA_VISIBLE_DEVICES=%s) started, pid %d", child.index,
                 child.device, child.proc.pid)

    def supervise_once(self) -> int | None:
        """Restart the children that died and are due; an exit status to end with, once a
        child reports a start-up mistake."""
        t = time.monotonic()
        for child in self.children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None or self._stop.is_set():
                continue
            if code == CONFIG_ERROR:
                log.error("GPU worker %d exited with a start-up error; stopping", child.index)
                return CONFIG_ERROR
            if child.due == 0.0:  # just found dead: decide when to start it again
                child.due = t + self._pause(child, t - child.started)
                log.error("GPU worker %d (pid %d, CUDA_VISIBLE_DEVICES=%s) exited with code "
                          "%s; starting it again in %.0f s", child.index, child.proc.pid,
                          child.device, code, child.due - t)
            if t >= child.due:
                child.due, child.restarts = 0.0, child.restarts + 1
                self._spawn(child)
        return None

    @staticmethod
    def _pause(child: Child, ran: float) -> float:
        """No pause after a long run; 1, 2, 4 ... up to 60 s while it keeps dying."""
        if ran >= STEADY_SECONDS:
            child.pause = RESTART_PAUSE[0]
            return 0.0
        pause, child.pause = child.pause, min(RESTART_PAUSE[1], child.pause * 2)
        return pause

    def run(self, tick: float = 0.5) -> int:
        """Supervise until asked to stop (or a child cannot start); then stop them all.

        Call it from the main thread, which also starts every child: Linux sends the
        parent-death signal when the thread that started a child ends, not the process.
        """
        code = 0
        while not self._stop.wait(tick):
            found = self.supervise_once()
            if found is not None:
                code = found
                break
        self.stop()
        return code

    def request_stop(self) -> None:
        """From a signal handler: only flag it (``run`` stops the children)."""
        self._stop.set()

    def stop(self) -> None:
        """SIGTERM every child; one still running after ``grace`` seconds is killed."""
        self._stop.set()
        live = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""The mistakes a command ends with: one ``error:`` line naming what to change, exit 2.

Every failure a user can fix has its own exception class, raised where the CLI starts the
operation that failed (opening the data folder, the database, the broker, a port), so that
``main`` prints ``error: <message>`` and nothing else.  Library exceptions that escape a
start-up step (``serve`` starts many things in one call) are translated here once, by
their class, never by their name: kombu's ``OperationalError`` is a broker's, SQLAlchemy's
a database's.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from worker.logs import mask_url
from worker.settings import Settings

T = TypeVar("T")


class CommandError(Exception):
    """A command cannot do what was asked; the message is the whole ``error:`` line."""


class StartupError(CommandError):
    """A setting or the environment keeps a command from starting."""


class Unusable(StartupError):
    """A folder, database or broker the command cannot use: what, why, the setting to change
    (``TEMPLATE``; a URL is shown masked, never with its password)."""

    TEMPLATE = "cannot use {target}: {reason}"

    def __init__(self, target: object, reason: str) -> None:
        shown = mask_url(target) if isinstance(target, str) else str(target)
        super().__init__(self.TEMPLATE.format(target=shown, reason=reason))


class DataFolderError(Unusable):
    TEMPLATE = ("cannot write to the data folder {target}: {reason}; set CXR_DATA_DIR (or "
                "--data-dir) to a folder this user can write")


class DatabaseError(Unusable):
    TEMPLATE = ("cannot use the database {target}: {reason}; check CXR_DATABASE_URL (and "
                "that the server runs)")


class NoSchemaError(StartupError):
    """The database is reachable but nobody created the gateway's tables in it yet."""

    def __init__(self, url: str) -> None:
        super().__init__(f"the database {mask_url(url)} has no gateway tables yet: start "
                         "'cxr-gateway serve' once (it creates them), or check "
                         "CXR_DATABASE_URL")


class NoGatewayDatabase(StartupError):
    """A read command found no gateway database where it was pointed (it never makes one)."""


class BrokerError(Unusable):
    TEMPLATE = "cannot reach the broker {target}: {reason}; check CXR_BROKER_URL"


class PortInUseError(StartupError):
    @classmethod
    def dicom(cls, settings: Settings) -> PortInUseError:
        return cls(f"port {settings.port} on {settings.host} is in use: stop the other "
                   "process or set CXR_PORT (or --port)")

    @classmethod
    def http(cls, settings: Settings) -> PortInUseError:
        return cls(f"the HTTP port {settings.api_host}:{settings.api_port} is in use: stop "
                   "the other process or set CXR_API_PORT (or --api-port; 0 turns it off)")


class NoSuchAddressError(StartupError):
    def __init__(self, host: str) -> None:
        super().__init__(f"cannot listen on {host}: no such address here; check CXR_HOST")


class ListenerProcessError(StartupError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail}; see the lines above, or set CXR_LISTENER_PROCESSES=1")


def first_line(exc: BaseException) -> str:
    """The driver's own first line (SQLAlchemy wraps it with SQL and a link)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def _is_broker_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError as KombuOperationalError

    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a dependency of the gateway image
        return isinstance(exc, KombuOperationalError)
    return isinstance(exc, KombuOperationalError | RedisError)


def translate(exc: BaseException, settings: Settings) -> StartupError | None:
    """The typed error for a library exception that escaped a start-up step, or None for
    a bug.  The broker is asked first: its exceptions are also ``OperationalError``s."""
    from sqlalchemy.exc import SQLAlchemyError

    from worker.ingest.processes import ListenerStartError

    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, ListenerStartError):
        return ListenerProcessError(str(exc))
    if _is_broker_error(exc):
        return BrokerError(settings.broker_url, first_line(exc))
    if isinstance(exc, SQLAlchemyError | ConnectionRefusedError):
        return DatabaseError(settings.effective_database_url, first_line(exc))
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.EACCES,
                                                         errno.ENOSPC):
        return DataFolderError(settings.data_dir, str(exc.strerror or exc))
    if exc.errno == errno.EADDRINUSE or "in use" in str(exc):
        # worker.ops.api.APIServer names the HTTP service in its message; the DICOM
        # listener's bind error is the socket's own
        return PortInUseError.http(settings) if "HTTP" in str(exc) \
            else PortInUseError.dicom(settings)
    if exc.errno == errno.EADDRNOTAVAIL:
        return NoSuchAddressError(settings.host)
    return None


def require_writable(folder: Path) -> None:
    """Fail before anything starts when the data folder cannot take a file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DataFolderError(folder, str(exc.strerror or exc)) from exc


def start_step(settings: Settings, start: Callable[[], T]) -> T:
    """Run one start-up step and return what it built; a mistake a user can fix comes
    out as a StartupError, a bug as itself."""
    require_writable(settings.data_dir)
    try:
        return start()
    except Exception as exc:
        typed = translate(exc, settings)
        if typed is None:
            raise
        if typed is exc:
            raise
        raise typed from exc

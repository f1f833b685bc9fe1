"""The value types the settings model is written in: a comma list, durations, a data
folder by name, the usable cores, and the error every refused value raises.  Kept apart
from ``fields`` so that the model reads as the list of settings it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, overload

from pydantic import Field
from pydantic_settings import NoDecode


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers narrow)."""
    try:
        return max(1, min(64, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(64, os.cpu_count() or 1))


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


CommaList = Annotated[tuple[str, ...], NoDecode]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class DataFolder(property):
    """A folder under ``data_dir`` by name, read-only: ``spool_dir = DataFolder("spool")``
    (a property, which pydantic leaves alone)."""

    def __init__(self, name: str) -> None:
        super().__init__(lambda settings: settings.data_dir / name,
                         doc=f"The data folder's {name}/.")

    @overload
    def __get__(self, instance: None, owner: type | None = None, /) -> DataFolder: ...
    @overload
    def __get__(self, instance: Any, owner: type | None = None, /) -> Path: ...
    def __get__(self, instance: Any, owner: type | None = None, /) -> Any:
        return super().__get__(instance, owner)

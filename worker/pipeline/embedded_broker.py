"""The embedded broker: kombu's filesystem transport, with messages that appear whole.

kombu (5.x) publishes a message by creating its final name in the queue folder and then
writing into it, while the consumer, polling that folder, renames away the first file it
lists and parses it.  A consumer that lists the file between the two reads an empty
message, and the ``JSONDecodeError`` ends the in-process Celery worker (seen once in CI:
ten studies published within 20 ms).  Here a message is written under a name the
consumer skips (``.part`` after ``.msg``: its filter wants ``<queue>.msg`` exactly) and
renamed into place once complete; a rename within one folder is atomic, so the consumer
only ever sees whole messages.

The consumer takes the first name in sorted order, and kombu names a message by the
time it was sent, so the filesystem queue is first come, first served whatever the
message's priority: on serve's one in-process worker, a live study's preparation waited
behind every batch preparation published before it.  Here the name starts with the
message's priority (0 live ... 9 batch, Celery's sense: lower first) and then the
zero-padded time, so sorted order is priority first, then age, as on Redis.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "worker.pipeline.embedded_broker:Transport"


def priority_of(payload: Any) -> int:
    """The message's priority as Celery sent it, 0-9 (0 when it names none)."""
    try:
        return max(0, min(9, int(payload["properties"]["priority"])))
    except (KeyError, TypeError, ValueError):
        return 0


class Channel(filesystem.Channel):
    # kombu's two bases disagree on this signature; filesystem.Channel's is the one called
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{priority_of(payload)}_{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

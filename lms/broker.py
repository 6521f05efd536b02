"""The directory broker a fresh machine uses: kombu's filesystem transport, made safe for a
producer and a consumer in different processes.

kombu writes a message by creating its file under the final name and then filling it, and a
consumer polling at that moment takes the empty file and dies on it (the worker stops with
"Unrecoverable error: JSONDecodeError"). Here each message is written under a name consumers
ignore and renamed into place once complete; a rename within one directory is atomic.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

# Celery's ``broker_transport`` for the directory broker (see lms.worker.broker).
TRANSPORT = "lms.broker:DirectoryTransport"


class DirectoryChannel(filesystem.Channel):
    # The stubs' own Channel._put differs from its base class's in the same way.
    def _put(self, queue: str, payload: dict[str, Any],  # type: ignore[override]
             **kwargs: Any) -> None:
        # The same name kombu gives a message: consumers sort on the leading milliseconds.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".partial"
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class DirectoryTransport(filesystem.Transport):
    Channel = DirectoryChannel

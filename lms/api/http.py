"""Route options the application's middleware reads (a route handler's ``opt``)."""

from __future__ import annotations

# Leave the answer uncompressed: for routes whose answers are always far below the
# compression threshold (lms.app), on the hot path.
NO_COMPRESSION = "no_compression"

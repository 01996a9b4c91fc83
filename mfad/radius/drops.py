"""Dropped RADIUS packets in the operator's log: what is misconfigured, said at WARNING, rate-limited.

A wrong shared secret, a NAS that sends no Message-Authenticator, a NAS that is not in
``[[radius.clients]]``: each leaves the NAS with no answer at all, so the log is the only
place an operator can find out why. Guarantee: at most one WARNING line per (client,
reason) per :data:`INTERVAL_SECONDS` — for unknown sources one per reason, whatever the
address —, the next one saying how many were dropped meanwhile; never a packet's content.
Drops that are expected in normal operation (a retransmission, shutdown) stay at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from mfad.radius.metrics import UNKNOWN_CLIENT_LABEL, DropReason

log = logging.getLogger("mfad.radius")

#: A misconfigured NAS retransmits several times a second; one line a minute says it.
INTERVAL_SECONDS: Final = 60.0

#: What an operator should look at, by reason; the reasons not listed stay at DEBUG.
HINTS: Final = {
    DropReason.UNKNOWN_CLIENT: "the source is no [[radius.clients]] entry (address or CIDR)",
    DropReason.BAD_AUTHENTICATOR: "its Message-Authenticator does not match: the shared secret on the NAS "
                                  "differs from this client's secret",
    DropReason.MISSING_MESSAGE_AUTHENTICATOR: "it sent no Message-Authenticator, which this client requires "
                                              "(an old NAS needs require_message_authenticator = false on its "
                                              "[[radius.clients]] entry)",
    DropReason.MALFORMED: "the packet does not parse as RADIUS",
    DropReason.RATE_LIMITED: "beyond the client's request rate (radius.client_rate_per_second)",
    DropReason.OVERLOAD: "too many requests being decided at once (radius.max_in_flight)",
    DropReason.TIMEOUT: "the decision took longer than the handler's deadline",
    DropReason.HANDLER_ERROR: "deciding it failed (see the error logged before)",
}


class DropLog:
    """Logs drops at WARNING, once per (client, reason) and interval, with the count between."""

    def __init__(self, clock: Callable[[], float], interval: float = INTERVAL_SECONDS) -> None:
        self._clock = clock
        self._interval = interval
        #: (client, reason) → (when last logged, drops not logged since)
        self._last: dict[tuple[str, DropReason], tuple[float, int]] = {}

    def dropped(self, reason: DropReason, host: str, client: str | None, detail: str = "") -> None:
        hint = HINTS.get(reason)
        name = client if client is not None else UNKNOWN_CLIENT_LABEL
        if hint is None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("RADIUS packet from %s (client %s) dropped: %s%s", host, name, reason.value, detail)
            return
        key = (name, reason)
        now = self._clock()
        last, suppressed = self._last.get(key, (None, 0))
        if last is not None and now - last < self._interval:
            self._last[key] = (last, suppressed + 1)
            return
        self._last[key] = (now, 0)
        more = f" ({suppressed} more since the last such line)" if suppressed else ""
        log.warning("RADIUS packet from %s (client %s) dropped: %s%s — %s%s", host, name, reason.value, detail,
                    hint, more)

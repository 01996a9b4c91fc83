"""Logging set-up: plain text for a terminal, one JSON object per line for collectors.

Nothing logged by mfad contains a code, secret, password, token or raw packet.

In the text format the sign-in decision lines (one per decision, the busiest logger)
are written by :class:`TextLineWriter` without a ``LogRecord``, formatter call or
handler dispatch, whenever the result is the line the logging machinery would have
written: the logger and its parents have no handlers or filters of their own, the root
has only the handler set up here, unfiltered and with its formatter. Anything else (a
test's capture handler, an added filter, the JSON format) takes the ordinary path.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)  # structured fields (a sign-in decision's): top-level keys
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextLineWriter:
    """A line writer (``mfad.core.decisions.LineWriter``) for ``handler`` with ``formatter``
    (:data:`TEXT_FORMAT`): the INFO line as ``formatter`` would make it, written under the
    handler's lock and flushed as ``StreamHandler.emit`` does, or False when the logging
    configuration is not the one it was made for."""

    __slots__ = ("_handler", "_formatter", "_second", "_stamp")

    def __init__(self, handler: logging.StreamHandler[Any], formatter: logging.Formatter) -> None:
        self._handler = handler
        self._formatter = formatter
        self._second = -1
        self._stamp = ""

    def asctime(self, created: float) -> str:
        """``formatter.formatTime`` of a record created at ``created`` (the second's text cached)."""
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime(self._formatter.default_time_format, self._formatter.converter(created))
            self._second = second
        msec_format = self._formatter.default_msec_format
        if msec_format is None:
            return self._stamp
        return msec_format % (self._stamp, int((created - second) * 1000))

    def is_plain(self, logger: logging.Logger) -> bool:
        """Whether an INFO record of ``logger`` would reach only this handler, unfiltered."""
        handler = self._handler
        if logger.filters or handler.filters or handler.formatter is not self._formatter \
                or handler.level > logging.INFO:
            return False
        current: logging.Logger | None = logger
        while current is not None:
            if current.parent is None:  # the root
                return len(current.handlers) == 1 and current.handlers[0] is handler
            if current.handlers:
                return False
            if not current.propagate:
                return False
            current = current.parent
        return False

    def __call__(self, logger: logging.Logger, message: str) -> bool:
        if not self.is_plain(logger):
            return False
        handler = self._handler
        line = f"{self.asctime(time.time())} INFO {logger.name}: {message}{handler.terminator}"
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.stream.flush()
        except Exception:  # as emit does: report it, never raise into the caller
            handler.release()
            return False
        handler.release()
        return True


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> TextLineWriter | None:
    """The root logger's one handler; returns the writer of pre-formatted lines for it (None
    for JSON), which the caller hands to ``mfad.core.decisions.use_line_writer``."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    writer = None
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
        handler.setFormatter(formatter)
        writer = TextLineWriter(handler, formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return writer

"""One log line per sign-in decision, for the operator's log and journal.

Guarantee: every call of a sign-in entry point of :class:`~mfad.core.signin.SignInService`
(``sign_in`` — its step named by the request: ``begin``, ``sign_in_with_code`` or
``verify_code`` — and ``complete``) that returns a decision, or refuses input that can never be valid, writes exactly one
INFO line on the ``mfad.signin`` logger: the user name as given (or as the challenge
names it), the protocol, the client (NAS or gRPC caller), the source, the step, the
method, the outcome, the reason and the latency. Never the code, the password, a token or
a secret: only those fields are read, never the arguments that carry them. The same
fields ride along as ``record.fields`` for the JSON log format.

The line is written for every decision, so the logging set-up may install a
:data:`LineWriter` (:func:`use_line_writer`) that writes the pre-formatted line itself
when that gives exactly what the logging machinery would (the text format, one handler,
no filters); when it cannot, the line goes through ``logging`` as usual.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from mfad.core.errors import InvalidInput, RateLimited

log = logging.getLogger("mfad.signin")

P = ParamSpec("P")
R = TypeVar("R")

LineWriter = Callable[[logging.Logger, str], bool]
"""Writes an INFO ``message`` of ``logger`` as the configured handler would, or returns False
(then the message goes through ``logging``)."""

_writer: LineWriter | None = None


def use_line_writer(writer: LineWriter | None) -> None:
    """Install (or, with None, remove) the fast writer of decision lines."""
    global _writer
    _writer = writer


def logged(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Log the decision of the wrapped entry point: ``sign_in(request)`` or
    ``complete(challenge_id, method, response, attempt, ...)``."""

    @functools.wraps(fn)
    async def logged_call(*args: P.args, **kwargs: P.kwargs) -> R:
        if not log.isEnabledFor(logging.INFO):
            return await fn(*args, **kwargs)
        started = time.perf_counter()
        try:
            result = await fn(*args, **kwargs)
        except (InvalidInput, RateLimited) as exc:
            _line(args[1:], None, "refused", "invalid_input" if isinstance(exc, InvalidInput) else "rate_limited",
                  started)
            raise
        _line(args[1:], result, _outcome(result), _reason(result), started)  # args[0] is the service
        return result

    return logged_call


def _outcome(result: Any) -> str:
    outcome = getattr(result, "outcome", None)
    if outcome is not None:
        return str(outcome)
    return "accepted" if getattr(result, "accepted", False) else "refused"


def _reason(result: Any) -> str | None:
    reason = getattr(result, "reason", None)
    return str(reason) if reason is not None else None


def _step(args: tuple[Any, ...]) -> tuple[str, Any, str | None, str | None]:
    """(step, attempt, user name as asked, method as asked) from the entry point's arguments."""
    request: Any = args[0] if args else None
    if hasattr(request, "first_factor"):  # sign_in(SignInRequest)
        one_call = request.code is not None or type(request.first_factor).__name__ == "PasswordThenCode"
        step = "verify_code" if request.code_required else "sign_in_with_code" if one_call else "begin"
        return step, request.attempt, request.username, str(request.method) if one_call else None
    method = args[1] if len(args) > 1 else None  # complete(challenge_id, method, response, attempt)
    attempt = args[3] if len(args) > 3 else None
    return "complete", attempt, None, str(method) if method is not None else None


def _line(args: tuple[Any, ...], result: Any, outcome: str, reason: str | None, started: float) -> None:
    step, attempt, username, method = _step(args)
    found = getattr(result, "user", None)
    if found is not None:
        username = found.username
    method = str(getattr(result, "method", None) or method or "-")
    protocol = getattr(attempt, "protocol", "-")
    client = getattr(attempt, "client", None) or "-"
    source = getattr(attempt, "source", None) or "-"
    latency = round((time.perf_counter() - started) * 1000, 1)
    user = username or "-"
    reason = reason or "-"
    # Only the user, client and source come from outside; the other fields are mfad's own
    # words (protocol, step, method, outcome and reason names), never in need of quotes.
    body = (f"user={_quoted(user)} protocol={protocol} client={_quoted(client)} source={_quoted(source)} "
            f"step={step} method={method} outcome={outcome} reason={reason} latency_ms={latency}")
    writer = _writer
    if writer is not None and writer(log, "sign-in " + body):
        return
    values = (user, protocol, client, source, step, method, outcome, reason, latency)
    log.info("sign-in %s", body, extra={"fields": dict(zip(_FIELDS, values))})


_FIELDS = ("user", "protocol", "client", "source", "step", "method", "outcome", "reason", "latency_ms")


#: A character that needs quoting in a ``key=value`` field: whitespace, ``=`` or a quote
#: (non-printable characters are caught by ``str.isprintable``). One regex search in C
#: instead of a generator over every character: this runs for every field of every decision.
_NEEDS_QUOTES = re.compile(r"[\s='\"]")


def _quoted(value: object) -> str:
    text = str(value)
    # A RADIUS User-Name may hold anything: quoted (control characters escaped), a line stays one line.
    return repr(text) if not text or not text.isprintable() or _NEEDS_QUOTES.search(text) is not None else text

"""What the RADIUS server asks of the code that decides, and what it gets back.

The server hands a verified :class:`~mfad.radius.codec.RadiusRequest` and its
:class:`~mfad.radius.clients.RadiusClient` to a :class:`RadiusHandler` and turns the
answer into packets: a :class:`Decision` becomes an Access-Accept, -Reject or
-Challenge; :data:`NO_REPLY` sends nothing, so the NAS fails over to another server
(the answer while the store is unavailable — never an accept). A :class:`Deferred`
says "no answer yet" (hold mode, docs/approval.md): the server keeps the request —
no task, no in-flight slot — until the handler settles it, and meanwhile answers
nothing to its retransmissions.

Guarantee: a Decision that exists can be encoded. Its attributes are checked and
encoded against the dictionary when it is built, a challenge always carries a State,
a reject never does (RFC 2865 §5.44 table), and the attributes the server writes
itself (Message-Authenticator, Proxy-State, State, Reply-Message, passwords) cannot
be smuggled in as extras.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final, Protocol

from mfad.radius.attributes import (
    MAX_VALUE_LENGTH,
    RESERVED_IN_REPLIES,
    Attr,
    AttributeValue,
    attribute_code,
    attribute_name,
    encode_value,
)
from mfad.radius.clients import RadiusClient
from mfad.radius.codec import RadiusCode, RadiusRequest, split_text
from mfad.radius.errors import RadiusEncodeError


class Outcome(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    CHALLENGE = "challenge"


REPLY_CODES: Final = {
    Outcome.ACCEPT: RadiusCode.ACCESS_ACCEPT,
    Outcome.REJECT: RadiusCode.ACCESS_REJECT,
    Outcome.CHALLENGE: RadiusCode.ACCESS_CHALLENGE,
}
"""The one table from a decision to a RADIUS reply code."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The answer to one Access-Request.

    ``message`` becomes Reply-Message attributes (split at 253 octets on character
    boundaries; note that pam_radius_auth shows only the first, so keep prompts under
    253 octets). ``attributes`` are extra ``(dictionary name, value)`` pairs such as
    ``("Session-Timeout", 120)``. ``copied`` are ``(dictionary name, octets)`` pairs taken as
    they are from another server's reply (an upstream RADIUS first factor's allow-listed
    attributes), placed after the others.
    """

    outcome: Outcome
    message: str = ""
    state: bytes = b""
    attributes: tuple[tuple[str, AttributeValue], ...] = ()
    copied: tuple[tuple[str, bytes], ...] = ()
    encoded: tuple[tuple[int, bytes], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.outcome is Outcome.CHALLENGE and not self.state:
            raise RadiusEncodeError("an Access-Challenge needs a State")
        if self.outcome is Outcome.REJECT and self.state:
            raise RadiusEncodeError("an Access-Reject carries no State")
        if len(self.state) > MAX_VALUE_LENGTH:
            raise RadiusEncodeError(f"State is over {MAX_VALUE_LENGTH} octets")
        encoded = [(int(Attr.REPLY_MESSAGE), chunk) for chunk in split_text(self.message)]
        if self.state:
            encoded.append((int(Attr.STATE), self.state))
        for name, value in self.attributes:
            number, octets = encode_value(name, value)
            if number in RESERVED_IN_REPLIES:
                raise RadiusEncodeError(
                    f"{attribute_name(number)} is set by the server, not a handler"
                )
            encoded.append((number, octets))
        for name, octets in self.copied:
            number = attribute_code(name)
            if number in RESERVED_IN_REPLIES:
                raise RadiusEncodeError(f"{name} is set by the server, not copied")
            if len(octets) > MAX_VALUE_LENGTH:
                raise RadiusEncodeError(f"value of RADIUS attribute {name} is over {MAX_VALUE_LENGTH} octets")
            encoded.append((number, octets))
        object.__setattr__(self, "encoded", tuple(encoded))

    @classmethod
    def accept(
        cls, message: str = "", *, attributes: Iterable[tuple[str, AttributeValue]] = (),
        copied: Iterable[tuple[str, bytes]] = (),
    ) -> Decision:
        return cls(outcome=Outcome.ACCEPT, message=message, attributes=tuple(attributes), copied=tuple(copied))

    @classmethod
    def reject(
        cls, message: str = "", *, attributes: Iterable[tuple[str, AttributeValue]] = ()
    ) -> Decision:
        return cls(outcome=Outcome.REJECT, message=message, attributes=tuple(attributes))

    @classmethod
    def challenge(
        cls,
        message: str,
        state: bytes,
        *,
        attributes: Iterable[tuple[str, AttributeValue]] = (),
    ) -> Decision:
        return cls(
            outcome=Outcome.CHALLENGE, message=message, state=state, attributes=tuple(attributes)
        )

    @property
    def code(self) -> RadiusCode:
        return REPLY_CODES[self.outcome]


class NoReply(Enum):
    """Send nothing: the NAS retries and then fails over to its next server."""

    NO_REPLY = "no_reply"


NO_REPLY: Final = NoReply.NO_REPLY


class Deferred:
    """The answer to a request comes later (hold mode). The handler keeps the object and
    calls :meth:`settle` once; the server :meth:`attach` es what sends the reply, and
    calls :meth:`retransmitted` for each retransmission it swallows meanwhile and
    :meth:`abandon` when it gives the request up (shutdown)."""

    __slots__ = ("hold_seconds", "_finish", "_early", "_on_retransmit", "_on_abandon", "__weakref__")

    def __init__(self, hold_seconds: float, *, on_retransmit: Callable[[], None] | None = None,
                 on_abandon: Callable[[], None] | None = None) -> None:
        #: How long the request may stay unanswered (a shared claim on it is kept as long).
        self.hold_seconds = hold_seconds
        self._finish: Callable[[Decision | NoReply], Coroutine[Any, Any, None]] | None = None
        self._early: Decision | NoReply | None = None
        self._on_retransmit = on_retransmit
        self._on_abandon = on_abandon

    def attach(self, finish: Callable[[Decision | NoReply], Coroutine[Any, Any, None]]) -> Coroutine[Any, Any, None] | None:
        """The server's part; returns the reply's sending when the handler settled already."""
        self._finish = finish
        if self._early is not None:
            early, self._early = self._early, None
            return finish(early)
        return None

    async def settle(self, decision: Decision | NoReply) -> None:
        """The handler's part, once: send ``decision`` (or nothing) to the held request."""
        finish, self._finish = self._finish, None
        self._on_retransmit = self._on_abandon = None
        if finish is None:
            self._early = decision
            return
        await finish(decision)

    def retransmitted(self) -> None:
        if self._on_retransmit is not None:
            self._on_retransmit()

    def abandon(self) -> None:
        """Given up: nothing will be sent; the handler forgets it."""
        self._finish = None
        on_abandon, self._on_abandon = self._on_abandon, None
        self._on_retransmit = None
        if on_abandon is not None:
            on_abandon()


class RadiusHandler(Protocol):
    """Decides one verified Access-Request. Must not raise for expected refusals.

    An exception or a timeout is treated like :data:`NO_REPLY` (and counted), so a
    fault never turns into an Access-Accept.
    """

    async def __call__(
        self, request: RadiusRequest, client: RadiusClient
    ) -> Decision | NoReply | Deferred: ...

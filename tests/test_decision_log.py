"""The sign-in decision line written without the logging machinery is the line the logging
machinery writes: same text, same time stamp format, and only when nothing else (a capture
handler, a filter, the JSON format) would see the record."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from mfad.core import decisions
from mfad.core.verification import VOUCHED, Attempt, SignInRequest
from mfad.observability.logging import TEXT_FORMAT, TextLineWriter, setup_logging

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    writer = decisions._writer
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    decisions.use_line_writer(writer)


class RecordCount:
    """LogRecords made for ``mfad.signin`` (the fast path makes none)."""

    def __init__(self) -> None:
        self.count = 0
        self._factory = logging.getLogRecordFactory()

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> logging.LogRecord:
        if name == "mfad.signin":
            self.count += 1
        return self._factory(name, *args, **kwargs)


@pytest.fixture
def records(restored_logging: None) -> Iterator[RecordCount]:
    counter = RecordCount()
    logging.setLogRecordFactory(counter)
    yield counter
    logging.setLogRecordFactory(counter._factory)


async def decide(username: str = "alice", source: str = "nas:vpn/192.0.2.7") -> None:
    """One decision through the real ``logged`` wrapper (a sign_in that allows at once)."""

    @decisions.logged
    async def sign_in(service: object, request: SignInRequest) -> Any:
        return SimpleNamespace(outcome="allowed", reason="accepted", user=None, method="totp")

    await sign_in(object(), SignInRequest(username=username, first_factor=VOUCHED, code="123456",
                                          attempt=Attempt(protocol="radius", source=source, client="vpn")))


def without_stamps(text: str) -> list[str]:
    lines = text.splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    return [re.sub(r"latency_ms=\S+", "latency_ms=L", STAMP.sub("", line)) for line in lines]


async def test_the_fast_line_is_the_logging_line(records: RecordCount) -> None:
    stream = io.StringIO()
    decisions.use_line_writer(setup_logging("info", "text", stream=stream))
    await decide()
    await decide("bob smith", "station 'x'")  # quoted fields
    assert records.count == 0  # written without a LogRecord
    fast = stream.getvalue()

    # The same decisions through the logging machinery: a filter that passes everything
    # makes the writer step aside.
    stream.seek(0)
    stream.truncate()
    logging.getLogger().handlers[0].addFilter(lambda record: True)
    await decide()
    await decide("bob smith", "station 'x'")
    assert records.count == 2
    slow = stream.getvalue()
    assert without_stamps(fast) == without_stamps(slow)
    assert without_stamps(fast)[0] == ("INFO mfad.signin: sign-in user=alice protocol=radius client=vpn "
                                       "source=nas:vpn/192.0.2.7 step=sign_in_with_code method=totp "
                                       "outcome=allowed reason=accepted latency_ms=L")
    assert without_stamps(fast)[1].startswith("INFO mfad.signin: sign-in user='bob smith' protocol=radius "
                                              "client=vpn source=\"station 'x'\" ")


async def test_another_handler_gets_the_record(records: RecordCount) -> None:
    stream = io.StringIO()
    decisions.use_line_writer(setup_logging("info", "text", stream=stream))
    captured: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = captured.append  # type: ignore[method-assign]  # a capture handler, as caplog adds
    logging.getLogger().addHandler(extra)
    await decide()
    assert records.count == 1 and len(captured) == 1
    assert captured[0].fields["user"] == "alice"  # type: ignore[attr-defined]  # the JSON format's fields
    assert "sign-in user=alice " in stream.getvalue()
    logging.getLogger().removeHandler(extra)
    await decide()
    assert records.count == 1  # back on the fast path
    assert stream.getvalue().count("sign-in user=alice ") == 2


async def test_json_and_quiet_levels_take_the_ordinary_path(records: RecordCount) -> None:
    stream = io.StringIO()
    decisions.use_line_writer(setup_logging("info", "json", stream=stream))
    await decide()
    assert records.count == 1 and '"user": "alice"' in stream.getvalue()
    lines = stream.getvalue().count("\n")
    decisions.use_line_writer(setup_logging("warning", "text", stream=stream))
    await decide()
    assert records.count == 1 and stream.getvalue().count("\n") == lines  # INFO off: nothing written


@pytest.mark.parametrize("created", [0.0, 1_764_806_400.0, 1_764_806_400.9995, 1_764_806_459.001, 1_800_000_000.5])
def test_the_time_stamp_is_the_formatters(created: float) -> None:
    formatter = logging.Formatter(TEXT_FORMAT)
    writer = TextLineWriter(logging.StreamHandler(io.StringIO()), formatter)
    record = logging.LogRecord("mfad.signin", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    assert writer.asctime(created) == formatter.formatTime(record)
    assert writer.asctime(created) == formatter.formatTime(record)  # from the cached second too

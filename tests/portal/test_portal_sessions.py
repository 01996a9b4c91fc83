"""Portal sessions on a clock the test moves: idle and absolute timeouts, a new id at sign-in,
a bounded number kept."""

from __future__ import annotations

from mfad_client.types import Session, SessionScope
from mfad_portal.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_and_absolute_timeouts_and_a_new_id_at_sign_in() -> None:
    clock = Clock()
    sessions = Sessions(idle=60, absolute=300, clock=clock)
    visitor = sessions.new()
    assert sessions.get(visitor.sid) is visitor and not visitor.is_signed_in
    signed = sessions.sign_in(visitor, "alice", Session(token="mfs1_x", scope=SessionScope.FULL, expires_at=None))
    assert signed.sid != visitor.sid and signed.csrf != visitor.csrf and signed.is_signed_in
    assert sessions.get(visitor.sid) is None  # the pre-sign-in id is gone (no fixation)
    for _ in range(5):  # kept alive by requests less than `idle` apart...
        clock.now += 50
        assert sessions.get(signed.sid) is signed
    clock.now += 51  # ...until `absolute` after sign-in
    assert sessions.get(signed.sid) is None
    idle = sessions.new()
    clock.now += 61
    assert sessions.get(idle.sid) is None and sessions.get("") is None and sessions.get("forged") is None


def test_the_oldest_go_first_beyond_capacity() -> None:
    sessions = Sessions(idle=60, absolute=300, capacity=3, clock=Clock())
    made = [sessions.new() for _ in range(5)]
    assert len(sessions) == 3
    assert [sessions.get(s.sid) is not None for s in made] == [False, False, True, True, True]

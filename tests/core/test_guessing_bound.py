"""The guessing bound, on a fixed clock over both store engines: every verification that
could succeed is counted, whatever shape the guessing takes, so a user faces at most
``hard_lock_after`` (100) guesses between two of their own successful sign-ins.

A guess is *fresh* when its code has not yet been checked against the candidates of that
moment (the TOTP window of the current step): only a fresh guess can succeed. The
attacker below is the strongest one: it knows when a block ends and comes back exactly
then (the real one only sees identical refusals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from mfad.core import totp
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Reason
from signin_calls import verify_code

DAY = 86400.0
STEP = 30.0
BLOCKS = {Reason.LOCKED, Reason.SOURCE_BACKOFF, Reason.SOURCE_RATE}


def at(source: str | None) -> Attempt:
    return Attempt(protocol="radius", source=source)


@dataclass
class Tally:
    fresh: int = 0
    attempts: int = 0
    hard_locked_after: float | None = None  # seconds into the day


async def guess_for_a_day(mfa: Mfa, alice: Any, clock: Any, *, code: Callable[[int], str],
                          source: Callable[[int], str | None], tries_per_step: int = 1,
                          pause: float = STEP) -> Tally:
    """Send ``code(i)`` from ``source(i)``, ``tries_per_step`` times in a row, then wait
    ``pause`` seconds; jump over every block; stop at a hard lock or after a day."""
    start = clock.now()
    tally = Tally()
    tried: set[tuple[str, int]] = set()
    i = 0
    while clock.now() - start < timedelta(seconds=DAY):
        guess, origin = code(i), source(i)
        if guess in {alice.code(d) for d in (-1, 0, 1)}:
            i += 1  # the right code by chance: not a guess this test can use
            continue
        reason = None
        for _ in range(tries_per_step):
            result = await verify_code(mfa.signin, alice.username, guess, at(origin))
            assert not result.accepted
            tally.attempts += 1
            reason = result.reason
            if reason is Reason.WRONG_CODE and (guess, alice.step()) not in tried:
                tried.add((guess, alice.step()))
                tally.fresh += 1
            if reason is not Reason.WRONG_CODE:
                break
        if reason is Reason.HARD_LOCKED:
            tally.hard_locked_after = (clock.now() - start).total_seconds()
            break
        if reason in BLOCKS:
            limits = (await mfa.store.load_subject(alice.user.id, origin)).limits
            ends = [t for t in (limits.locked_until, limits.source_blocked_until) if t and t > clock.now()]
            clock.set(max(ends)) if ends else clock.advance(1)
            continue
        i += 1
        clock.advance(pause)
    return tally


def fixed(code: str) -> Callable[[int], str]:
    return lambda i: code


def one_source(i: int) -> str:
    return "198.51.100.7"


def new_source(i: int) -> str:
    return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


def distinct(codes: Iterator[str]) -> Callable[[int], str]:
    seen: dict[int, str] = {}
    return lambda i: seen.setdefault(i, next(codes))


@pytest.mark.parametrize("shape", ["fixed code each step", "fixed code, ten times a step", "distinct codes",
                                   "fixed code, new source each step", "distinct codes, new source each second"])
async def test_every_guess_that_could_succeed_is_counted_and_guessing_stops_at_a_hundred(
        mfa: Mfa, enrol: Any, clock: Any, config: Any, shape: str) -> None:
    alice = await enrol("alice")
    clock.advance(300)
    fixed_code = next(alice.wrong_codes())
    shapes: dict[str, dict[str, Any]] = {
        "fixed code each step": dict(code=fixed(fixed_code), source=one_source),
        "fixed code, ten times a step": dict(code=fixed(fixed_code), source=one_source, tries_per_step=10),
        "distinct codes": dict(code=distinct(alice.wrong_codes()), source=one_source),
        "fixed code, new source each step": dict(code=fixed(fixed_code), source=new_source),
        "distinct codes, new source each second": dict(code=distinct(alice.wrong_codes()), source=new_source,
                                                        pause=1.0),
    }
    tally = await guess_for_a_day(mfa, alice, clock, **shapes[shape])
    state = await mfa.lockout("alice")
    assert state.total_failures == tally.fresh  # every guess that could succeed counted, no other
    assert tally.fresh <= config.limits.hard_lock_after
    assert state.hard_locked and tally.hard_locked_after is not None  # within the day, whatever the shape


async def test_a_fixed_code_over_200_steps_is_locked_out_like_distinct_codes(
        mfa: Mfa, enrol: Any, clock: Any) -> None:
    """The probe's guesser: one code, one source, once a step for 200 steps."""
    alice = await enrol("alice")
    bob = await enrol("bob")
    clock.advance(300)
    fixed_code = next(c for c in alice.wrong_codes() if c not in {bob.code(d) for d in range(-2, 3)})
    other_codes = bob.wrong_codes()
    fixed_reasons, distinct_reasons = [], []
    for _ in range(200):
        fixed_reasons.append((await verify_code(mfa.signin, "alice", fixed_code, at("192.0.2.9"))).reason)
        guess = next(other_codes)
        while guess in {bob.code(d) for d in (-1, 0, 1)}:
            guess = next(other_codes)
        distinct_reasons.append((await verify_code(mfa.signin, "bob", guess, at("192.0.2.9"))).reason)
        clock.advance(STEP)
    assert fixed_reasons == distinct_reasons  # the same counting, the same back-off
    assert fixed_reasons[:5] == [Reason.WRONG_CODE] * 5 and Reason.SOURCE_BACKOFF in fixed_reasons
    alice_state, bob_state = await mfa.lockout("alice"), await mfa.lockout("bob")
    assert alice_state.total_failures == bob_state.total_failures == fixed_reasons.count(Reason.WRONG_CODE)
    assert alice_state.total_failures > 1


@pytest.mark.parametrize("source", [None, "203.0.113.20"])
async def test_a_client_resending_a_stale_code_within_its_window_does_not_lock_its_user_out(
        mfa: Mfa, enrol: Any, clock: Any, source: str | None) -> None:
    alice = await enrol("alice")
    clock.advance(300)
    saved = alice.code()
    assert (await verify_code(mfa.signin, "alice", saved, at(source))).accepted
    for _ in range(18):  # reconnecting every 5 s with the saved code, for 90 s
        clock.advance(5)
        result = await verify_code(mfa.signin, "alice", saved, at(source))
        assert not result.accepted and result.reason in (Reason.REPLAY, Reason.WRONG_CODE)
    state = await mfa.lockout("alice")
    # One failure per step the window moved through (4 at most), far from any lock-out or back-off.
    assert 1 <= state.total_failures <= 4 and state.locked_until is None and state.source_blocked_until is None
    clock.advance(STEP)
    assert (await verify_code(mfa.signin, "alice", alice.code(), at(source))).accepted


async def test_the_same_wrong_code_within_one_step_counts_once(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    clock.set(clock.now().replace(second=0) + timedelta(minutes=5, seconds=1))  # 29 s left in the step
    code = next(alice.wrong_codes())
    step = totp.step_at(clock.now(), 30)
    while totp.step_at(clock.now() + timedelta(seconds=1), 30) == step:
        assert (await verify_code(mfa.signin, "alice", code, at("192.0.2.1"))).reason is Reason.WRONG_CODE
        clock.advance(1)
    assert (await mfa.lockout("alice")).total_failures == 1
    clock.advance(1)  # the next step: a new candidate entered the window
    await verify_code(mfa.signin, "alice", code, at("192.0.2.1"))
    assert (await mfa.lockout("alice")).total_failures == 2

"""Property test: the sign-in adapter on the real core and a real SQLite store never
raises on any request the codec can produce (names that are not text, passwords that
are not text or absurd, States mfad never made, every mode), and never accepts what
does not carry alice's one valid code."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from radius_peers import SECRET

from mfad.config import Config, PasswordSettings, StorageSettings
from mfad.core import totp
from mfad.core.clock import FixedClock
from mfad.core.keyring import Keyring
from mfad.core.service import Mfa
from mfad.radius import NO_REPLY, ClientMode, Decision, Outcome, RadiusClient, RadiusCode, RadiusRequest
from mfad.radius.attributes import Attr
from mfad.radius.codec import PasswordIssue
from mfad.radius.signin import SignInHandler, encode_state
from mfad.store import open_store

NOW = datetime(2026, 1, 1, 9, 0, 10, tzinfo=UTC)
PASSWORD = "a password for radius tests"

texts = st.text(max_size=40)
alice = st.just(b"alice")
users = st.one_of(alice, alice, alice, st.none(), texts.map(str.encode), st.binary(max_size=40))
passwords = st.one_of(
    st.just(PASSWORD), st.just("VALID"), st.just(PASSWORD + "VALID"), st.just("email"),
    st.sampled_from(list(PasswordIssue)), texts, st.text(alphabet="0123456789", min_size=0, max_size=10),
)
# "LAST": the State of the last Access-Challenge the adapter gave, to answer it.
states = st.one_of(
    st.none(), st.none(), st.just(b"LAST"), st.just(b"LAST"), st.binary(max_size=64),
    st.binary(max_size=30).map(lambda b: b"mfad1t" + b), st.binary(max_size=30).map(lambda b: b"mfad1e" + b),
    st.text(max_size=30).map(lambda t: encode_state_text(t)),
)
stations = st.one_of(st.none(), st.binary(max_size=20))


def encode_state_text(text: str) -> bytes:
    from mfad.core.model import Method

    return encode_state(Method.TOTP, text, "alice") if text.isascii() else b"mfad1t" + text.encode()


modes = st.sampled_from(list(ClientMode))
# Random requests, mixed with the ones a real sign-in is made of, so that challenges are
# opened, answered (rightly and wrongly), replayed and abused in every order.
meaningful = st.one_of(
    st.tuples(alice, st.just(PASSWORD), st.none(), stations, st.just(ClientMode.CHALLENGE)),
    st.tuples(alice, st.sampled_from(["VALID", "000000", "email", "12345", PASSWORD]), st.just(b"LAST"),
              stations, modes),
    st.tuples(alice, st.sampled_from(["VALID", PASSWORD + "VALID", PASSWORD + "000000"]), st.none(), stations,
              st.sampled_from([ClientMode.OTP_ONLY, ClientMode.APPEND])),
)
requests = st.one_of(meaningful, st.tuples(users, passwords, states, stations, modes))


async def decide_all(batch: list[tuple[bytes | None, str | PasswordIssue, bytes | None, bytes | None, ClientMode]]
                     ) -> list[tuple[object, bool]]:
    with tempfile.TemporaryDirectory() as directory:
        storage = StorageSettings(url=f"sqlite:///{directory}/mfad.db")
        store = await open_store(storage)
        await store.migrate()
        mfa = Mfa(settings=Config(storage=storage, passwords=PasswordSettings(time_cost=1, memory_kib=64,
                                                                              parallelism=1)).core,
                  store=store, keyring=Keyring.open(Path(directory) / "k"), clock=FixedClock(NOW))
        try:
            await mfa.start()
            await mfa.users.create("alice", PASSWORD)
            binding = await mfa.devices.begin_totp("alice")
            key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))
            step = totp.step_at(NOW, 30)
            await mfa.devices.confirm_totp("alice", binding.device.id, totp.hotp(key, step))
            valid = totp.hotp(key, step + 1)
            handler = SignInHandler(mfa.signin, challenge_ttl=120)
            out = []
            last = b"none yet"
            for user, password, state, station, mode in batch:
                if state == b"LAST":
                    state = last
                if isinstance(password, str):
                    password = password.replace("VALID", valid)
                attributes = [(int(Attr.USER_NAME), user)] if user is not None else []
                if state is not None:
                    attributes.append((int(Attr.STATE), state[:253]))
                if station is not None:
                    attributes.append((int(Attr.CALLING_STATION_ID), station))
                request = RadiusRequest(code=RadiusCode.ACCESS_REQUEST, identifier=1, authenticator=bytes(16),
                                        attributes=tuple(attributes), has_message_authenticator=True,
                                        password=password, source_address="192.0.2.7")
                client = RadiusClient(name="nas", network=ipaddress.ip_network("192.0.2.0/24"), secret=SECRET,
                                      mode=mode, trust_calling_station_id=True)
                decision = await handler(request, client)
                if isinstance(decision, Decision) and decision.outcome is Outcome.CHALLENGE:
                    last = decision.state
                    # Only her password opens one; a wrong code or "email" answering it may ask again.
                    assert user == b"alice" and (password == PASSWORD if state is None else True)
                may_accept = user == b"alice" and (password == valid if state is not None else (
                    (mode is ClientMode.OTP_ONLY and password == valid)
                    or (mode is ClientMode.APPEND and password == PASSWORD + valid)))
                out.append((decision, may_accept))
            return out
        finally:
            mfa.close()
            await store.aclose()


@given(st.lists(requests, min_size=1, max_size=25))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_adapter_never_raises_and_accepts_only_the_valid_code(
        batch: list[tuple[bytes | None, str | PasswordIssue, bytes | None, bytes | None, ClientMode]]) -> None:
    for decision, may_accept in asyncio.run(decide_all(batch)):
        assert decision is NO_REPLY or isinstance(decision, Decision)
        if isinstance(decision, Decision) and decision.outcome is Outcome.ACCEPT:
            assert may_accept

"""Recovery codes over gRPC: generated with a session (after a step-up), used to sign in and in
one call, counted by the Admin API and ``mfactl recovery status``.

Real servicers on loopback, a real store (both engines), the fixed clock, the typed client and
``mfactl`` as a subprocess.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from mfactl_runner import run_mfactl
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401

from mfad.core.clock import FixedClock
from mfad.core.model import Role
from mfad.core.verification import Attempt
from mfad_client import FailedPrecondition, Method, PermissionDenied, SignInOutcome, StepUpOutcome, VerifyOutcome



async def signed_in(g: GrpcMfad, user: Any) -> str:
    begun = await g.portal.auth.begin_sign_in(user.username, user.password)
    done = await g.portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=user.code(1))
    assert done.session is not None
    return done.session.token


async def test_generate_after_step_up_then_sign_in_with_a_code(grpc_mfad: GrpcMfad, enrol: Any,
                                                               clock: FixedClock) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    session = await signed_in(g, alice)
    clock.advance(400)  # the sign-in's second factor is no longer fresh
    with pytest.raises(FailedPrecondition):
        await g.portal.enrollment.generate_recovery_codes(session)
    step = await g.portal.auth.verify_sensitive(code=alice.code(), operation="recovery_codes", session=session)
    assert step.outcome is StepUpOutcome.VERIFIED
    made = await g.portal.enrollment.generate_recovery_codes(session)
    assert len(made.codes) == 10 and made.status.codes_left == 10 and made.status.created_at == clock.now()
    assert (await g.portal.enrollment.recovery_status(session)).codes_left == 10
    assert not (await g.portal.enrollment.list_devices(session)).lockout_risk

    begun = await g.portal.auth.begin_sign_in("alice", alice.password)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED and Method.RECOVERY in begun.methods
    done = await g.portal.auth.complete_challenge(begun.challenge_id, Method.RECOVERY, code=made.codes[0].lower())
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    again = await g.portal.auth.begin_sign_in("alice", alice.password)
    used = await g.portal.auth.complete_challenge(again.challenge_id, Method.RECOVERY, code=made.codes[0])
    assert used.outcome is SignInOutcome.REFUSED and used.session is None

    # One call, for a service that checked the password itself.
    assert await g.service.auth.verify_code("alice", made.codes[1], method=Method.RECOVERY) is VerifyOutcome.ACCEPTED
    assert await g.service.auth.verify_code("alice", made.codes[1], method=Method.RECOVERY) is VerifyOutcome.REFUSED
    assert (await g.admin.admin.recovery_status("alice")).codes_left == 8


async def test_policy_without_recovery_refuses_generation(grpc_mfad: GrpcMfad, enrol: Any) -> None:
    g = grpc_mfad
    alice = await enrol("alice")
    session = await signed_in(g, alice)
    await g.admin.admin.set_policy(allowed_methods=[Method.TOTP, Method.PASSKEY])
    with pytest.raises(PermissionDenied):
        await g.portal.enrollment.generate_recovery_codes(session)


async def test_mfactl_recovery_status(grpc_mfad: GrpcMfad, enrol: Any, clock: FixedClock) -> None:
    g = grpc_mfad
    await enrol("alice")

    async def mfactl(*args: str) -> subprocess.CompletedProcess[str]:
        return await run_mfactl(g.address, g.tokens[Role.ADMIN], *args)

    none = await mfactl("recovery", "status", "alice")
    assert none.returncode == 0, none.stderr
    assert none.stdout.strip() == "alice: no recovery codes"
    made = await g.mfa.recovery.generate("alice", Attempt(protocol="test"))
    assert (await g.service.auth.verify_code("alice", made.codes[2], method=Method.RECOVERY)) is VerifyOutcome.ACCEPTED
    text = await mfactl("recovery", "status", "alice")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "alice: 9 recovery code(s) left"
    assert lines[1] == f"generated: {clock.now():%Y-%m-%d %H:%M:%S} UTC"
    as_json = json.loads((await mfactl("--json", "recovery", "status", "alice")).stdout)
    assert as_json["codes_left"] == 9 and as_json["created_at"] and as_json["last_used_at"]
    unknown = await mfactl("recovery", "status", "nobody")
    assert unknown.returncode != 0

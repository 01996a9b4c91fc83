"""The security-email parts of the gRPC servicers: binding (Enrollment, Admin) and the
email details of a started challenge. One core use case per call, as everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.api import convert
from mfad.core.email_codes import CodeSent
from mfad.core.service import Mfa
from mfad.core.signin import challenge_hash


def code_sent(sent: CodeSent) -> pb.EmailCodeSent:
    return pb.EmailCodeSent(device_id=str(sent.device.id) if sent.device else "", masked_email=sent.masked_address,
                            resend_after=convert.timestamp(sent.resend_after),
                            expires_at=convert.timestamp(sent.expires_at))


async def challenge_details(mfa: Mfa, challenge_id: str, masked: str, sent_at: datetime) -> pb.ChallengeDetails:
    """What StartChallenge(METHOD_EMAIL) answers: where the code went and its timing."""
    s = mfa.email.settings
    expires = sent_at + timedelta(seconds=s.code_ttl_seconds)
    challenge = await mfa.store.load_challenge(challenge_hash(challenge_id))
    if challenge is not None:
        expires = min(expires, challenge.expires_at)  # a code dies with its challenge
    return pb.ChallengeDetails(challenge_id=challenge_id, method=pb.METHOD_EMAIL, masked_email=masked,
                               resend_after=convert.timestamp(sent_at + timedelta(seconds=s.resend_seconds)),
                               expires_at=convert.timestamp(expires))

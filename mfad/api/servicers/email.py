"""The security-email parts of the gRPC servicers: binding (Enrollment, Admin). One core use case per call, as everywhere."""

from __future__ import annotations

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.api import convert
from mfad.core.email_codes import CodeSent


def code_sent(sent: CodeSent) -> pb.EmailCodeSent:
    return pb.EmailCodeSent(device_id=str(sent.device.id) if sent.device else "", masked_email=sent.masked_address,
                            resend_after=convert.timestamp(sent.resend_after),
                            expires_at=convert.timestamp(sent.expires_at))

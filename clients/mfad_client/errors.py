"""What a failed call raises: one class per gRPC status code mfad answers with.

Expected refusals (a wrong code, a locked user) are not errors: they come back
as an outcome (``REFUSED``). These are for calls the server did not carry out.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc


class ClientError(Exception):
    """A call failed; ``code`` is the gRPC status, ``details`` the server's words."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"


class InvalidArgument(ClientError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ClientError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ClientError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ClientError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ClientError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ClientError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ClientError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(ClientError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DeadlineExceeded(ClientError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


ERROR_BY_CODE: Mapping[grpc.StatusCode, type[ClientError]] = {
    cls.code: cls
    for cls in (InvalidArgument, Unauthenticated, PermissionDenied, NotFound, AlreadyExists, FailedPrecondition,
                ResourceExhausted, Unavailable, Unimplemented, DeadlineExceeded)
}


def error_for(code: grpc.StatusCode, details: str | None) -> ClientError:
    cls = ERROR_BY_CODE.get(code, ClientError)
    return cls(details or code.name.lower(), code)

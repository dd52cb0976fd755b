"""What can go wrong talking to etcd, as types the callers act on.

The gateway answers an error as `{"error", "message", "code"}` with the gRPC status code
(google.golang.org/grpc/codes); `from_answer` maps the ones a caller treats differently.
"""

from __future__ import annotations

# gRPC status codes the gateway passes on.
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED = 3, 5, 7
OUT_OF_RANGE, UNAVAILABLE, UNAUTHENTICATED = 11, 14, 16


class EtcdError(Exception):
    """etcd refused a request or could not be asked; `code` is the gRPC code when known."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint answered (refused, timed out, no leader): try again later."""


class EtcdCompacted(EtcdError):
    """The revision asked for is gone: read again at the current one."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message, OUT_OF_RANGE)
        self.compact_revision = compact_revision


class EtcdAuthError(EtcdError):
    """Wrong user or password, an expired token, or a permission missing."""


class EtcdTooLarge(EtcdError):
    """The request is over the server's --max-request-bytes or --max-txn-ops."""


class EtcdLeaseLost(EtcdError):
    """The lease expired or was revoked."""


def from_answer(body: dict, status: int) -> EtcdError:
    message = str(body.get("message") or body.get("error") or f"HTTP {status}")
    code = body.get("code")
    code = code if isinstance(code, int) else None
    if code == OUT_OF_RANGE and "compacted" in message:
        return EtcdCompacted(message)
    if code == UNAVAILABLE or status in (502, 503, 504) or "no leader" in message or "timed out" in message:
        return EtcdUnavailable(message, code)
    if code in (UNAUTHENTICATED, PERMISSION_DENIED) or any(w in message for w in ("auth", "permission denied", "user name")):
        return EtcdAuthError(message, code)
    if "too large" in message or "larger than max" in message or "too many operations" in message:
        return EtcdTooLarge(message, code)
    if code == NOT_FOUND and "lease" in message:
        return EtcdLeaseLost(message, code)
    return EtcdError(message, code)

"""Error kinds and the HTTP status each maps to.

Every refusal the router can answer is one `ErrorKind`. The mapping to a status lives in
one exhaustive table so that the proxy, the admin API and `stamp-router route` all agree.
Expected outcomes of a routing decision (unknown tenant, no healthy stamp) are values
(`core.decision.Reject`), not exceptions; `RouterError` is for failures raised while
parsing or carrying out a request.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    BAD_REQUEST = "bad_request"
    INVALID_TENANT = "invalid_tenant"
    INVALID_TOKEN = "invalid_token"
    UNAUTHENTICATED = "unauthenticated"
    UNKNOWN_TENANT = "unknown_tenant"
    TENANT_READ_ONLY = "tenant_read_only"
    # A paused pin: the request is held (router.proxy.hold), and answered with this only
    # when the hold ends without a release (hold_timeout, or the hold queue full).
    TENANT_PAUSED = "tenant_paused"
    NO_ROUTE = "no_route"
    BODY_TOO_LARGE = "body_too_large"
    UNKNOWN_HOST = "unknown_host"
    HEADERS_TOO_LARGE = "headers_too_large"
    NOT_IMPLEMENTED = "not_implemented"
    UPSTREAM_FAILURE = "upstream_failure"
    NO_HEALTHY_STAMP = "no_healthy_stamp"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    REQUEST_TIMEOUT = "request_timeout"
    INTERNAL = "internal"
    RATE_LIMITED = "rate_limited"
    RESIDENCY_UNKNOWN = "residency_unknown"
    NO_RESIDENCY_STAMP = "no_residency_stamp"
    MISDIRECTED = "misdirected"
    OVERLOADED = "overloaded"


STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.INVALID_TENANT: 400,
    ErrorKind.INVALID_TOKEN: 401,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.TENANT_READ_ONLY: 403,
    ErrorKind.UNKNOWN_TENANT: 404,
    ErrorKind.NO_ROUTE: 404,
    ErrorKind.REQUEST_TIMEOUT: 408,
    ErrorKind.BODY_TOO_LARGE: 413,
    ErrorKind.UNKNOWN_HOST: 421,
    # RFC 9110 15.5.20: this router cannot answer for the request's residency.
    ErrorKind.RESIDENCY_UNKNOWN: 421,
    ErrorKind.MISDIRECTED: 421,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.HEADERS_TOO_LARGE: 431,
    ErrorKind.INTERNAL: 500,
    ErrorKind.NOT_IMPLEMENTED: 501,
    ErrorKind.UPSTREAM_FAILURE: 502,
    ErrorKind.NO_HEALTHY_STAMP: 503,
    ErrorKind.NO_RESIDENCY_STAMP: 503,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.TENANT_PAUSED: 503,
    ErrorKind.UPSTREAM_TIMEOUT: 504,
}
assert set(STATUS) == set(ErrorKind), "every error kind needs a status"


def status_of(kind: ErrorKind) -> int:
    return STATUS[kind]


class RouterError(Exception):
    """A failure that ends a request with the status of its kind."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.kind]


class ConfigError(Exception):
    """A config that failed validation; carries every error with its field path."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("\n".join(format_error(p, m) for p, m in errors))

    def as_json(self) -> list[dict[str, str]]:
        return [{"path": p, "message": m} for p, m in self.errors]

    def lines(self, limit: int | None = None) -> list[str]:
        """Each error as "path: message", the form `check`, `serve` and the logs print."""
        return [format_error(p, m) for p, m in self.errors[:limit]]


def format_error(path: str, message: str) -> str:
    return f"{path or '(document)'}: {message}"

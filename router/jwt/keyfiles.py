"""Reading verification keys from disk, for the runtime and for `stamp-router route` alike.

Paths in [jwt] are relative to the config file's directory (as `tenants_file` is). A secret
file's trailing CR/LF are removed, because `echo secret > file` is how most are written;
a binary secret that ends in such bytes must be stored differently (docs/jwt.md).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from router.core.jwt_keys import KeySet, UnusableKey, keyset_from_jwks, keyset_from_secret

if TYPE_CHECKING:
    from router.config.load import ValidConfig
    from router.config.schema import Jwt

# A JWKS with a handful of keys is a few kilobytes; this bounds what a broken or hostile
# endpoint can make us hold.
MAX_JWKS_BYTES = 1024 * 1024
MAX_SECRET_BYTES = 4096


class KeyLoadError(Exception):
    """Keys could not be had; `field` is the config path to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def config_dir(valid: "ValidConfig") -> str:
    # A config that came from the control plane or the admin API has no file of its own;
    # its relative paths are the local config file's (the loader records that directory).
    if valid.base_dir:
        return valid.base_dir
    source = valid.source
    return os.path.dirname(source) if os.path.isabs(source) else os.getcwd()


def resolve_path(valid: "ValidConfig", path: str) -> str:
    return os.path.normpath(os.path.join(config_dir(valid), os.path.expanduser(path)))


def _read(path: str, field: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise KeyLoadError(field, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise KeyLoadError(field, f"{path} is larger than {limit} bytes")
    return data


def jwks_from_bytes(data: bytes, origin: str, field: str) -> KeySet:
    try:
        return keyset_from_jwks(data, origin)
    except UnusableKey as exc:
        raise KeyLoadError(field, f"{origin}: {exc}") from None


def read_jwks_file(path: str) -> KeySet:
    return jwks_from_bytes(_read(path, "jwt.jwks_file", MAX_JWKS_BYTES), f"jwks_file {path}", "jwt.jwks_file")


def read_secret_file(path: str, algorithms: list[str] | tuple[str, ...]) -> KeySet:
    secret = _read(path, "jwt.secret_file", MAX_SECRET_BYTES).rstrip(b"\r\n")
    try:
        return keyset_from_secret(secret, algorithms, f"secret_file {path}")
    except UnusableKey as exc:
        raise KeyLoadError("jwt.secret_file", f"{path}: {exc}") from None


def file_source(valid: "ValidConfig", jwt: "Jwt") -> tuple[str, str] | None:
    """("jwks_file" | "secret_file", absolute path) when the keys come from disk."""
    if jwt.jwks_file:
        return "jwks_file", resolve_path(valid, jwt.jwks_file)
    if jwt.secret_file:
        return "secret_file", resolve_path(valid, jwt.secret_file)
    return None


def read_key_file(kind: str, path: str, jwt: "Jwt") -> KeySet:
    return read_jwks_file(path) if kind == "jwks_file" else read_secret_file(path, jwt.algorithms)

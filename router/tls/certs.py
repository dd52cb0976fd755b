"""Reading and checking certificate/key pairs before anything serves them.

A pair is read once into memory and checked there (the key belongs to the certificate,
the certificate is within its validity, it names at least one DNS name); OpenSSL is
then given those very bytes (`memfile`), so a file rewritten between the check and the
load can never put an unchecked pair into service.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from router.tls.names import normalize_name

MAX_PEM_BYTES = 1 << 20


class PairError(Exception):
    """A certificate/key pair that cannot serve; `field` is cert_file or key_file."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class CertPair:
    cert_file: str
    key_file: str
    cert_pem: bytes = b""
    key_pem: bytes = b""
    names: tuple[str, ...] = ()
    key_type: str = ""                # "RSA" or "ECDSA"
    not_before: float = 0.0
    not_after: float = 0.0
    subject: str = ""
    issuer: str = ""
    fingerprint: str = ""             # sha256 of the leaf, hex

    def info(self) -> dict:
        """What GET /certs shows: never the key."""
        return {"cert_file": self.cert_file, "key_file": self.key_file, "names": list(self.names),
                "key_type": self.key_type, "subject": self.subject, "issuer": self.issuer,
                "not_before": self.not_before, "not_after": self.not_after,
                "sha256": self.fingerprint}


def read_pem(path: str, field: str) -> bytes:
    if os.path.isdir(path):
        raise PairError(field, f"{path}: is a directory, not a PEM file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise PairError(field, f"{path}: cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise PairError(field, f"{path}: is empty")
    if len(data) > MAX_PEM_BYTES:
        raise PairError(field, f"{path}: larger than {MAX_PEM_BYTES} bytes; not a PEM certificate or key")
    return data


def dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(dict.fromkeys(normalize_name(n) for n in san.get_values_for_type(x509.DNSName)))


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def load_pair(cert_file: str, key_file: str, now: float) -> CertPair:
    cert_pem = read_pem(cert_file, "cert_file")
    key_pem = read_pem(key_file, "key_file")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise PairError("cert_file", f"{cert_file}: not a PEM certificate chain ({exc})") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise PairError("key_file", f"{key_file}: the key is encrypted; give it unencrypted") from None
    except (ValueError, Exception) as exc:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise PairError("key_file", f"{key_file}: not a PEM private key ({exc})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        key_type = "RSA"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        key_type = "ECDSA"
    else:
        raise PairError("key_file", f"{key_file}: {type(key).__name__} keys are not served; use RSA or ECDSA")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise PairError("key_file", f"{key_file}: does not belong to the certificate in {cert_file}")
    not_after = leaf.not_valid_after_utc.timestamp()
    if not_after <= now:
        raise PairError("cert_file", f"{cert_file}: expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    names = dns_names(leaf)
    if not names:
        raise PairError("cert_file", f"{cert_file}: names no DNS name (subjectAltName); clients would refuse it")
    return CertPair(
        cert_file=cert_file, key_file=key_file, cert_pem=cert_pem, key_pem=key_pem, names=names,
        key_type=key_type, not_before=leaf.not_valid_before_utc.timestamp(), not_after=not_after,
        subject=leaf.subject.rfc4514_string(), issuer=leaf.issuer.rfc4514_string(),
        fingerprint=hashlib.sha256(leaf.public_bytes(der)).hexdigest())


@contextmanager
def memfile(data: bytes) -> Iterator[str]:
    """A path whose content is `data`, for OpenSSL's path-only loaders: an anonymous
    memory file on Linux (a key never touches a disk), else a private temporary file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("stamp-router-pem", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        yield f.name


def load_into(ctx: ssl.SSLContext, pair: CertPair) -> None:
    with memfile(pair.cert_pem) as cert_path, memfile(pair.key_pem) as key_path:
        ctx.load_cert_chain(cert_path, key_path)


def expiry_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

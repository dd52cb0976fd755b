"""The certificate every system serves in the TLS scenarios: ECDSA P-256 for `localhost`.

A throwaway CA signs one leaf (subjectAltName localhost and 127.0.0.1, ECDSA P-256 with
SHA-256, the key type most TLS edges now serve first). The router and nginx read the
leaf and its key; HAProxy reads the same two concatenated into one file.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from systems import TlsCert

SERVER_NAME = "localhost"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def material(directory: Path) -> TlsCert:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("stamp-router bench CA")).issuer_name(_name("stamp-router bench CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(SERVER_NAME)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    cert_pem = leaf.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    out = TlsCert(directory / "localhost.pem", directory / "localhost.key", directory / "localhost-combined.pem",
                  directory / "ca.pem", SERVER_NAME)
    out.cert_file.write_bytes(cert_pem)
    out.key_file.write_bytes(key_pem)
    out.key_file.chmod(0o600)
    out.combined_file.write_bytes(cert_pem + key_pem)
    out.combined_file.chmod(0o600)
    out.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return out

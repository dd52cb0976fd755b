"""A test PKI (trustme) written to files, and TLS clients for the router's https listener."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme



@dataclass
class Pki:
    """One test CA and the pairs issued by it, as files under `root`."""

    root: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, name: str, *names: str, key_type: str = "ECDSA", expired: bool = False,
              common_name: str | None = None) -> dict:
        """Write `name`.pem/.key; returns {"cert_file", "key_file"} as the config wants them."""
        kwargs = {}
        if expired:
            kwargs["not_after"] = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
            kwargs["not_before"] = kwargs["not_after"] - datetime.timedelta(days=30)
        cert = self.ca.issue_cert(*names, key_type=getattr(trustme.KeyType, key_type), common_name=common_name,
                                  **kwargs)
        pair = {"cert_file": str(self.root / f"{name}.pem"), "key_file": str(self.root / f"{name}.key")}
        cert.private_key_pem.write_to_path(pair["key_file"])
        with open(pair["cert_file"], "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        return pair

    def client_context(self, **kwargs) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        for k, v in kwargs.items():
            setattr(ctx, k, v)
        return ctx


def two_ports() -> tuple[int, int]:
    """Two free ports, distinct (free_port twice may give one port twice)."""
    socks = [socket.socket() for _ in range(2)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def https_doc(doc: dict, certificates: list[dict], **listen) -> tuple[dict, dict]:
    """The doc with listen.https, and router_proc's keyword arguments (its http port)."""
    port, http_port = two_ports()
    doc = dict(doc)
    doc["listen"] = {**doc.get("listen", {}), "https": f"127.0.0.1:{port}", "certificates": certificates, **listen}
    return doc, port, {"port": http_port}


def peer_names(port: int, ctx: ssl.SSLContext, server_name: str | None) -> list[str]:
    """The DNS names of the certificate the router serves for `server_name` (SNI)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def https_get(port: int, ctx: ssl.SSLContext, sni: str, path: str = "/", host: str | None = None,
              headers: dict | None = None, timeout: float = 10.0):
    """One request over a new TLS connection: (status, headers, body)."""
    conn = http.client.HTTPSConnection(sni, port, context=ctx, timeout=timeout)
    # Connect to loopback whatever the name: the name is only for SNI and verification.
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout), server_hostname=sni)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or sni)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()

"""The SSL contexts of listen.https, and the SNI callback that picks one per handshake.

`ServerTls.build()` runs before anything forks (the process model's supervisor, or
`serve` itself): the `base` context it creates holds the session ticket keys, and every
handshake starts on it, so workers forked from one process resume each other's sessions
(Python's ssl cannot set ticket keys itself, CPython issue 81301). The SNI callback then
moves the handshake to the context of the certificates that cover the name; OpenSSL
keeps encrypting and decrypting tickets with the context the handshake started on (its
`session_ctx`), so a certificate reload, which replaces only the per-name contexts,
does not end resumption either.

Each per-name context holds every pair with the same names (RSA and ECDSA side by side:
OpenSSL sends each client the one its signature algorithms allow).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from router.errors import ConfigError
from router.tls.certs import CertPair, PairError, load_into, load_pair, read_pem
from router.tls.names import NameTable, covers, normalize_name
from router.tls.records import RecordObject

ALPN = ["http/1.1"]


@dataclass(frozen=True, slots=True)
class ListenTls:
    """What listen.https serves, from the config: resolved paths, no contexts yet."""

    pairs: tuple[tuple[str, str], ...]        # (cert_file, key_file), config order
    ciphers: str
    require_sni: bool
    client_ca_file: str | None
    client_verify: str

    @classmethod
    def of(cls, listen, base_dir: str) -> ListenTls | None:
        if not listen.https:
            return None
        at = lambda p: os.path.join(base_dir, p) if p else p   # noqa: E731
        return cls(tuple((at(c.cert_file), at(c.key_file)) for c in listen.certificates), listen.tls_ciphers,
                   listen.require_sni, at(listen.client_ca_file), listen.client_verify)


def new_context(spec: ListenTls, client_ca: bytes | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(spec.ciphers)
    # Mozilla "intermediate": every suite offered is strong, so the client's order
    # (which knows whether it has AES hardware) decides. No renegotiation: nothing
    # here needs it, and it is a client-triggered CPU cost.
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(ALPN)
    ctx.sslobject_class = RecordObject      # what uvloop's wrap_bio makes (router.tls.records)
    if client_ca is not None:
        ctx.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        ctx.verify_mode = ssl.CERT_REQUIRED if spec.client_verify == "required" else ssl.CERT_OPTIONAL
    return ctx


@dataclass(frozen=True, slots=True)
class CertSet:
    """Loaded pairs and the contexts serving them; replaced whole on a reload."""

    pairs: tuple[CertPair, ...]
    table: NameTable          # name -> ssl.SSLContext

    def names(self) -> set[str]:
        return {n for p in self.pairs for n in p.names}


def load_certs(spec: ListenTls, now: float, path: str = "listen.certificates") -> tuple[CertSet, bytes | None]:
    """Read and check every pair and the client CA; all errors at once, with their paths."""
    errors, pairs = [], []
    for i, (cert_file, key_file) in enumerate(spec.pairs):
        try:
            pairs.append(load_pair(cert_file, key_file, now))
        except PairError as exc:
            errors.append((f"{path}[{i}].{exc.field}", exc.message))
    client_ca = None
    if spec.client_ca_file:
        try:
            client_ca = read_pem(spec.client_ca_file, "client_ca_file")
        except PairError as exc:
            errors.append(("listen.client_ca_file", exc.message))
    seen: dict[tuple[frozenset, str], int] = {}
    for i, pair in enumerate(pairs):
        key = (frozenset(pair.names), pair.key_type)
        if key in seen:
            errors.append((f"{path}[{i}].cert_file", f"{pair.key_type} certificate for the same names as "
                           f"{path}[{seen[key]}]: one of each key type per name set"))
        seen.setdefault(key, i)
    if errors:
        raise ConfigError(errors)
    groups: dict[frozenset, list[CertPair]] = {}
    for pair in pairs:
        groups.setdefault(frozenset(pair.names), []).append(pair)
    entries = []
    try:
        for group in groups.values():
            ctx = new_context(spec, client_ca)
            for pair in group:
                load_into(ctx, pair)
            entries.append((group[0].names, ctx))
    except ssl.SSLError as exc:
        raise ConfigError([(path, f"OpenSSL refused a pair: {exc.reason or exc}")]) from None
    # Dict order of the groups is config order, so the first pair's context is the default.
    return CertSet(tuple(pairs), NameTable(entries)), client_ca


def lost_names(old: CertSet, new: CertSet, domains: list[str]) -> list[str]:
    """Names of a configured domain (routing.domains, or under one) that `old` served and
    `new` would not: a rotation that silently drops a tenant's name is refused."""
    lost = []
    for name in sorted(old.names() - new.names()):
        bare = name[2:] if name.startswith("*.") else name
        if any(bare == d or bare.endswith("." + d) for d in (x.lower().rstrip(".") for x in domains)):
            if not any(covers(n, name.replace("*", "x", 1)) for n in new.names()):
                lost.append(name)
    return lost


class ServerTls:
    """The https listener's contexts. `base` never changes; `certs` is swapped by reloads."""

    def __init__(self, spec: ListenTls, certs: CertSet, client_ca: bytes | None) -> None:
        self.spec = spec
        self.certs = certs
        self.client_ca = client_ca
        self.base = new_context(spec, client_ca)
        self.base.sni_callback = self._on_sni

    def replace(self, certs: CertSet, spec: ListenTls) -> None:
        """New pairs (same listener settings): the base context and its ticket keys stay."""
        self.certs, self.spec = certs, spec

    def _on_sni(self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        table = self.certs.table
        chosen = table.lookup(name) if name else None
        if chosen is None:
            # Counted by the connection once the handshake is done (router.proxy.tls).
            sslobj.sni_fallback = "unknown" if name else "none"
            if self.spec.require_sni:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            chosen = table.default
        sslobj.context = chosen
        # For the connection to check each request's Host against (router.proxy.tls).
        sslobj.sni = normalize_name(name) if name else None
        return None

"""RFC 2136 dynamic update with TSIG: BIND 9, Knot, and any primary that speaks it.

Reads are one TSIG-signed AXFR (RFC 5936), over TCP. Each change is one signed UPDATE
whose prerequisites (RFC 2136 section 2.4) restate the old content of every set it
touches, the ownership record included: "RRset exists (value dependent)" for a set that
is there, "RRset does not exist" for one that is not. A server that changed since the
read answers NXRRSET or YXRRSET and applies nothing; that is a ConflictError, and the
updater reads again and re-plans. The prerequisite compares values, not TTLs (2.4.2).

Plain servers hold no weights in A/AAAA sets: those carry the healthy stamps' addresses,
and SRV records carry the weights.
"""

from __future__ import annotations

import asyncio
import re

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone

from router.config.addresses import parse_hostport
from router.dns.errors import ConflictError, ProviderError
from router.dns.model import Record, make_record
from router.dns.plan import Change
from router.dns.providers.base import Provider, diff_sets

_CONFLICT = {dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN}
_HINTS = {
    dns.rcode.REFUSED: "the server refused it: grant the key updates of this zone (BIND update-policy, Knot acl action update)",
    dns.rcode.NOTAUTH: "the server is not authoritative for the zone or did not accept the key",
    dns.rcode.NOTZONE: "a name is outside the zone",
    dns.rcode.SERVFAIL: "the server failed (BIND answers SERVFAIL to an RRset over 100 records)",
    dns.rcode.FORMERR: "the server could not parse the message",
    dns.rcode.NOTIMP: "the server does not implement dynamic update",
}

_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (dns.tsig.PeerBadKey, "the server does not know TSIG key {key} (BADKEY)"),
    (dns.tsig.PeerBadSignature, "the server rejected the signature of TSIG key {key} (BADSIG): "
                                "the secret differs from the server's"),
    (dns.tsig.PeerBadTime, "the server rejected the TSIG time (BADTIME): check both clocks"),
    (dns.tsig.BadSignature, "the answer's TSIG signature does not verify with key {key}"),
    (dns.xfr.TransferError, "zone transfer refused ({rcode}): allow key {key} to transfer the zone"),
    (dns.exception.Timeout, "no answer within {timeout:g}s"),
    (asyncio.TimeoutError, "no answer within {timeout:g}s"),
    (ConnectionRefusedError, "connection refused: is the server running on that port?"),
    (OSError, "{detail}"),
    (dns.exception.FormError, "the server garbled the answer ({type}); a wrong TSIG key is the usual cause"),
    (EOFError, "the server closed the connection ({type}); a wrong TSIG key is the usual cause"),
)

_KEY_BLOCK = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.S)
_STATEMENT = re.compile(r'(algorithm|secret)\s+"?([^";\s]+)"?\s*;')
_COMMENT = re.compile(r"(#|//)[^\n]*")


def parse_key_file(text: str, path: str) -> dict:
    """The keys of a tsig-keygen (BIND key statement) file, every one of them.

    dnspython's own reader takes only the first key of a file. Messages never quote the
    file, which holds the secrets.
    """
    keys = {}
    for name, body in _KEY_BLOCK.findall(_COMMENT.sub("", text)):
        fields = dict(_STATEMENT.findall(body))
        if set(fields) != {"algorithm", "secret"}:
            raise ProviderError(f"{path}: key {name} needs one algorithm and one secret statement")
        keys[name] = (fields["algorithm"], fields["secret"])
    if not keys:
        raise ProviderError(f'{path} is not a tsig-keygen key file (expected key "name" '
                            f'{{ algorithm ...; secret "..."; }};)')
    try:
        return dns.tsigkeyring.from_text(keys)
    except Exception:  # noqa: BLE001 - bad base64 or an unknown algorithm, by several types
        raise ProviderError(f"{path}: a secret is not base64, or an algorithm is unknown") from None


class Rfc2136Provider(Provider):
    kind = "rfc2136"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.host, self.port = parse_hostport(cfg.server)
        self.timeout = cfg.timeout
        self._keyring: dict | None = None
        self._keyname: dns.name.Name | None = None

    def describe(self) -> str:
        return f"rfc2136 {self.cfg.server} zone {self.zone}"

    def _key(self) -> tuple[dict, dns.name.Name]:
        if self._keyring is None:
            path = self.cfg.tsig_key_file
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise ProviderError(f"cannot read TSIG key file {path}: {exc.strerror}") from None
            keyring = parse_key_file(text, path)
            wanted = self.cfg.tsig_key_name
            if wanted is not None:
                name = dns.name.from_text(wanted)
                if name not in keyring:
                    raise ProviderError(f"{path} has no key named {wanted}")
            elif len(keyring) > 1:
                raise ProviderError(f"{path} holds {len(keyring)} keys; set tsig_key_name")
            else:
                name = next(iter(keyring))
            self._keyring, self._keyname = keyring, name
        return self._keyring, self._keyname

    def _failure(self, exc: BaseException, doing: str) -> ProviderError:
        key = self._keyname.to_text(omit_final_dot=True) if self._keyname else "?"
        where = f"{self.cfg.server} ({doing} {self.zone})"
        # First match wins: PeerBadKey and friends subclass the more general kinds below.
        for kind, template in _FAILURES:
            if isinstance(exc, kind):
                rcode = dns.rcode.to_text(exc.rcode) if isinstance(exc, dns.xfr.TransferError) else ""
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                return ProviderError(where + ": " + template.format(
                    key=key, timeout=self.timeout, rcode=rcode, detail=detail, type=type(exc).__name__))
        return ProviderError(f"{where}: {type(exc).__name__}: {exc}")

    async def _read_records(self) -> list[Record]:
        keyring, keyname = self._key()
        origin = dns.name.from_text(self.zone)
        zone = dns.zone.Zone(origin, relativize=False)
        query = dns.message.make_query(origin, "AXFR")
        query.use_tsig(keyring, keyname=keyname)
        try:
            await dns.asyncquery.inbound_xfr(self.host, zone, query=query, port=self.port,
                                             timeout=self.timeout, lifetime=self.timeout * 4)
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            raise self._failure(exc, "reading") from None
        return [make_record(name.to_text(), dns.rdatatype.to_text(rds.rdtype), rds.ttl,
                            [rd.to_text() for rd in rds])
                for name, rds in zone.iterate_rdatasets()]

    def _update(self, change: Change) -> dns.update.UpdateMessage:
        keyring, keyname = self._key()
        msg = dns.update.UpdateMessage(self.zone, keyring=keyring, keyname=keyname)
        for old, new in diff_sets(change):
            if old is not None:
                msg.present(old.name, old.type, *old.values)
            else:
                msg.absent(new.name, new.type)
            if new is None:
                msg.delete(old.name, old.type)
            elif old is None or old != new:
                msg.replace(new.name, new.ttl, new.type, *new.values)
        return msg

    async def _apply(self, changes: tuple[Change, ...]) -> None:
        for change in changes:
            msg = self._update(change)
            try:
                response = await dns.asyncquery.tcp(msg, self.host, port=self.port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError, EOFError, asyncio.TimeoutError) as exc:
                raise self._failure(exc, "updating") from None
            rcode = response.rcode()
            if rcode == dns.rcode.NOERROR:
                continue
            name, rtype = change.key
            if rcode in _CONFLICT:
                raise ConflictError(f"{self.describe()}: {name} {rtype} changed since it was read "
                                    f"({dns.rcode.to_text(rcode)} on the prerequisites)")
            hint = _HINTS.get(rcode, "")
            raise ProviderError(f"{self.describe()}: update of {name} {rtype} answered "
                                f"{dns.rcode.to_text(rcode)}" + (f": {hint}" if hint else ""))

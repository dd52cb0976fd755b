"""RFC 2136 dynamic update with TSIG: BIND 9, Knot, and any primary that speaks it.

Reads are one TSIG-signed AXFR (RFC 5936), over TCP. Each plan is one signed UPDATE
whose prerequisites (RFC 2136 section 2.4) restate the old content of every set it
touches, the ownership record included: "RRset exists (value dependent)" for a set that
is there, "RRset does not exist" for one that is not. A server that changed since the
read answers NXRRSET or YXRRSET and applies nothing; that is a ConflictError, and the
updater reads again and re-plans.

A plan is one UPDATE message, which the server applies whole or not at all: a SERVFAIL
or a refused key leaves the zone as it was; after a timeout the server holds the whole
plan or none of it, and the next pass reads which. Only a plan over one message's
size (about 60 KB of records, hundreds of keys) is split, each part still atomic. The prerequisite compares values, not TTLs (2.4.2).

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

# One DNS message over TCP is at most 65,535 bytes; the rest is room for the header,
# the zone section and the TSIG record.
MAX_UPDATE_BYTES = 60_000
_UPDATE_OVERHEAD = 12

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

    def _failure(self, exc: BaseException, doing: str, after: str = "") -> ProviderError:
        key = self._keyname.to_text(omit_final_dot=True) if self._keyname else "?"
        where = f"{self.cfg.server} ({doing} {self.zone})"
        # First match wins: PeerBadKey and friends subclass the more general kinds below.
        for kind, template in _FAILURES:
            if isinstance(exc, kind):
                rcode = dns.rcode.to_text(exc.rcode) if isinstance(exc, dns.xfr.TransferError) else ""
                detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                return ProviderError(where + ": " + template.format(
                    key=key, timeout=self.timeout, rcode=rcode, detail=detail, type=type(exc).__name__) + after)
        return ProviderError(f"{where}: {type(exc).__name__}: {exc}{after}")

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

    def _update(self, changes: tuple[Change, ...]) -> dns.update.UpdateMessage:
        keyring, keyname = self._key()
        msg = dns.update.UpdateMessage(self.zone, keyring=keyring, keyname=keyname)
        for change in changes:
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

    def _batches(self, changes: tuple[Change, ...]) -> list[tuple[Change, ...]]:
        """The plan in as few UPDATE messages as fit in one DNS message over TCP: usually
        one, which the server applies whole or not at all (RFC 2136 3.4, 3.7)."""
        batches: list[tuple[Change, ...]] = []
        batch: list[Change] = []
        size = 0
        for change in changes:
            cost = len(self._update((change,)).to_wire()) - _UPDATE_OVERHEAD
            if batch and size + cost > MAX_UPDATE_BYTES:
                batches.append(tuple(batch))
                batch, size = [], 0
            batch.append(change)
            size += cost
        if batch:
            batches.append(tuple(batch))
        return batches

    async def _apply(self, changes: tuple[Change, ...]) -> None:
        batches = self._batches(changes)
        for number, batch in enumerate(batches):
            msg = self._update(batch)
            try:
                response = await dns.asyncquery.tcp(msg, self.host, port=self.port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError, EOFError, asyncio.TimeoutError) as exc:
                unknown = isinstance(exc, (dns.exception.Timeout, asyncio.TimeoutError))
                raise self._failure(exc, "updating", _written(batches, number, unknown)) from None
            rcode = response.rcode()
            if rcode == dns.rcode.NOERROR:
                continue
            keys = ", ".join(f"{name} {rtype}" for name, rtype in (c.key for c in batch))
            if rcode in _CONFLICT:
                raise ConflictError(f"{self.describe()}: {'' if len(batch) == 1 else 'one of '}{keys} changed since "
                                    f"it was read ({dns.rcode.to_text(rcode)} on the prerequisites)"
                                    + _written(batches, number))
            hint = _HINTS.get(rcode, "")
            raise ProviderError(f"{self.describe()}: update of {keys} answered "
                                f"{dns.rcode.to_text(rcode)}" + (f": {hint}" if hint else "") + _written(batches, number))


def _written(batches: list, failed: int, unknown: bool = False) -> str:
    """What a failed write left: nothing of this plan, unless earlier messages applied
    (or, `unknown`: the unanswered message may have been applied, whole)."""
    if unknown:
        return ("; the server may hold this update whole or not at all (never a part): "
                "the next pass reads the zone and plans from what is there")
    if failed == 0:
        return "; the zone is as it was"
    return f"; {failed} of {len(batches)} update messages were applied before it (the next pass reads and re-plans)"

"""PowerDNS Authoritative through its HTTP API, with weights in LUA records.

An A or AAAA key becomes one LUA RRset, `A "pickwrandom({{70,'192.0.2.10'},...})"`,
which PowerDNS evaluates per query (enable-lua-records=yes): each answer is drawn with
its weight. SRV keys are plain SRV RRsets.

The API has no prerequisites. Before its one PATCH (atomic for all its RRsets) the
provider reads the zone again and compares the old content of every change: a
difference is a ConflictError. The window between that read and the PATCH is not
covered; one updater per owner id keeps it harmless.

The API accepts any LUA text, and a bad one only shows as SERVFAIL when queried, so with
`server` set every written key is queried once after the read-back.
"""

from __future__ import annotations

import asyncio

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode

from router.config.addresses import parse_hostport
from router.dns.errors import ProviderError, VerifyError
from router.dns.model import DesiredSet, Key, Record, make_record
from router.dns.plan import Change
from router.dns.providers.base import Provider, diff_sets


def lua_pickwrandom(rtype: str, pairs) -> str:
    """The LUA record content for weighted (weight, address) pairs."""
    body = ",".join(f"{{{w},'{addr}'}}" for w, addr in sorted(pairs, key=lambda p: p[1]))
    return f'{rtype} "pickwrandom({{{body}}})"'


class PowerDnsProvider(Provider):
    kind = "powerdns"
    WEIGHTED_ADDRESSES = True

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        base = cfg.api_url.rstrip("/")
        self.zone_url = f"{base}/api/v1/servers/{cfg.server_id}/zones/{self.zone}"
        self.dns_server = parse_hostport(cfg.server) if cfg.server else None
        self._api_key: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def describe(self) -> str:
        return f"powerdns {self.cfg.api_url} zone {self.zone}"

    def render(self, desired: DesiredSet) -> tuple[Record, ...]:
        if desired.type not in ("A", "AAAA"):
            return super().render(desired)
        weights: dict[str, int] = {}
        for m in desired.members:
            weights[m.value] = weights.get(m.value, 0) + m.weight
        content = lua_pickwrandom(desired.type, [(w, a) for a, w in weights.items()])
        return (make_record(desired.name, "LUA", desired.ttl, [content]),)

    def classify(self, record: Record) -> Key | None:
        if record.type == "LUA":
            rtype = record.values[0].split(" ", 1)[0].upper() if record.values else ""
            return (record.name, rtype) if rtype in ("A", "AAAA") else None
        return super().classify(record)

    def _headers(self) -> dict[str, str]:
        if self._api_key is None:
            path = self.cfg.api_key_file
            try:
                with open(path, encoding="utf-8") as fh:
                    key = fh.read().strip()
            except OSError as exc:
                raise ProviderError(f"cannot read PowerDNS API key file {path}: {exc.strerror}") from None
            if not key:
                raise ProviderError(f"PowerDNS API key file {path} is empty")
            self._api_key = key
        return {"X-API-Key": self._api_key, "Accept": "application/json"}

    async def _request(self, method: str, body: dict | None = None) -> dict | None:
        headers = self._headers()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout))
        where = f"{self.describe()}: {method}"
        try:
            async with self._session.request(method, self.zone_url, json=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
                data = await resp.json(content_type=None) if text.strip() else None
        except asyncio.TimeoutError:
            raise ProviderError(f"{where}: no answer within {self.cfg.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{where}: cannot reach the API: {exc}") from None
        except ValueError:
            raise ProviderError(f"{where}: HTTP {status}, not JSON: {text[:200]!r}") from None
        if status == 401:
            raise ProviderError(f"{where}: the API rejected the key from {self.cfg.api_key_file} (HTTP 401)")
        if status == 404:
            raise ProviderError(f"{where}: no zone {self.zone} on server {self.cfg.server_id} (HTTP 404)")
        if status >= 300:
            error = data.get("error") if isinstance(data, dict) else text[:200]
            raise ProviderError(f"{where}: HTTP {status}: {error}")
        return data

    async def _read_records(self) -> list[Record]:
        data = await self._request("GET")
        if not isinstance(data, dict) or not isinstance(data.get("rrsets"), list):
            raise ProviderError(f"{self.describe()}: the zone answer has no rrsets list")
        out = []
        for rrset in data["rrsets"]:
            values = [r["content"] for r in rrset.get("records", []) if not r.get("disabled")]
            if values:
                out.append(make_record(rrset["name"], rrset["type"], rrset["ttl"], values))
        return out

    async def _apply(self, changes: tuple[Change, ...]) -> None:
        await self._assert_unchanged(changes)
        rrsets = []
        for change in changes:
            for old, new in diff_sets(change):
                if new is None:
                    rrsets.append({"name": old.name, "type": old.type, "changetype": "DELETE"})
                elif new != old:
                    rrsets.append({"name": new.name, "type": new.type, "ttl": new.ttl, "changetype": "REPLACE",
                                   "records": [{"content": v, "disabled": False} for v in new.values]})
        await self._request("PATCH", {"rrsets": rrsets})

    async def _check_answers(self, changes: tuple[Change, ...]) -> None:
        if self.dns_server is None:
            return
        host, port = self.dns_server
        for change in changes:
            if not change.new:
                continue
            name, rtype = change.key
            query = dns.message.make_query(name, rtype)
            try:
                answer = await dns.asyncquery.udp(query, host, port=port, timeout=self.cfg.timeout)
            except (dns.exception.DNSException, OSError) as exc:
                raise ProviderError(f"{self.describe()}: querying {name} {rtype} at {self.cfg.server}: "
                                    f"{type(exc).__name__}") from None
            if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
                raise VerifyError(f"{self.describe()}: {name} {rtype} answers "
                                  f"{dns.rcode.to_text(answer.rcode())} with {len(answer.answer)} "
                                  f"answer sets after the write (a LUA record that does not evaluate?)")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
